//! When a job is due. (Placeholder: the schedule type is being built in the jobs issue.)

/// When a job is due.
#[derive(Debug, Clone)]
pub struct Schedule;
