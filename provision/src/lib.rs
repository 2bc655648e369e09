//! Provisioning: cluster files, planner, state journal, bootstrap (work in progress).
