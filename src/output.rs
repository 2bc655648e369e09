//! Tables and JSON output of client commands.
