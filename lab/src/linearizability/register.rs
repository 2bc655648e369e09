//! The register map: string keys, each absent or holding a version (a `u64`), written, read
//! and deleted one key at a time. Keys are independent, so histories are checked key by key.

use super::Model;
use std::collections::BTreeMap;

/// An operation on a [`RegisterMap`], with its result.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Sets `key` to `value`; answers nothing but success.
    Write {
        /// The key written.
        key: String,
        /// The value written.
        value: u64,
    },
    /// Reads `key`: `value` is what was seen, `None` for absent.
    Read {
        /// The key read.
        key: String,
        /// What the read saw.
        value: Option<u64>,
    },
    /// Removes `key`, present or not; answers nothing but success.
    Delete {
        /// The key removed.
        key: String,
    },
}

impl RegisterOp {
    /// The key it works on.
    pub fn key(&self) -> &str {
        match self {
            Self::Write { key, .. } | Self::Read { key, .. } | Self::Delete { key } => key,
        }
    }
}

/// A map from keys to versions, every key absent at first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RegisterMap {
    values: BTreeMap<String, u64>,
}

impl RegisterMap {
    /// The empty map.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Model for RegisterMap {
    type Op = RegisterOp;

    fn step(&self, op: &RegisterOp) -> Option<Self> {
        match op {
            RegisterOp::Write { key, value } => {
                let mut next = self.clone();
                next.values.insert(key.clone(), *value);
                Some(next)
            }
            RegisterOp::Read { key, value } => (self.values.get(key) == value.as_ref()).then(|| self.clone()),
            RegisterOp::Delete { key } => {
                let mut next = self.clone();
                next.values.remove(key);
                Some(next)
            }
        }
    }

    fn partition(op: &RegisterOp) -> Option<&str> {
        Some(op.key())
    }
}
