//! Resource amounts: integer millicores, MiB and GPUs.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cpu_m: u64,
    #[serde(default)]
    pub memory_mb: u64,
    #[serde(default)]
    pub gpu: u64,
}

/// One resource dimension, for reasons and per-dimension reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Cpu,
    Memory,
    Gpu,
    ConcurrentJobs,
    PendingJobs,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Cpu => "cpu",
            Dimension::Memory => "memory",
            Dimension::Gpu => "gpu",
            Dimension::ConcurrentJobs => "concurrent_jobs",
            Dimension::PendingJobs => "pending_jobs",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Dimension::Cpu => " m",
            Dimension::Memory => " MiB",
            Dimension::Gpu => "",
            Dimension::ConcurrentJobs | Dimension::PendingJobs => " jobs",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu_m: 0,
        memory_mb: 0,
        gpu: 0,
    };

    pub fn new(cpu_m: u64, memory_mb: u64, gpu: u64) -> Self {
        Self {
            cpu_m,
            memory_mb,
            gpu,
        }
    }

    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_m: self.cpu_m.saturating_add(other.cpu_m),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }

    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_m: self.cpu_m.saturating_sub(other.cpu_m),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    /// `self` scaled by `percent` / 100, rounded down.
    pub fn scaled_percent(self, percent: u64) -> Resources {
        let scale = |value: u64| {
            ((u128::from(value) * u128::from(percent)) / 100).min(u128::from(u64::MAX)) as u64
        };
        Resources {
            cpu_m: scale(self.cpu_m),
            memory_mb: scale(self.memory_mb),
            gpu: scale(self.gpu),
        }
    }

    /// The larger of the two in each dimension.
    pub fn max_per_dimension(self, other: Resources) -> Resources {
        Resources {
            cpu_m: self.cpu_m.max(other.cpu_m),
            memory_mb: self.memory_mb.max(other.memory_mb),
            gpu: self.gpu.max(other.gpu),
        }
    }

    /// Whether every dimension of `self` is at most `limit`'s.
    pub fn fits_within(self, limit: Resources) -> bool {
        self.cpu_m <= limit.cpu_m && self.memory_mb <= limit.memory_mb && self.gpu <= limit.gpu
    }

    pub fn dimensions(self) -> [(Dimension, u64); 3] {
        [
            (Dimension::Cpu, self.cpu_m),
            (Dimension::Memory, self.memory_mb),
            (Dimension::Gpu, self.gpu),
        ]
    }
}
