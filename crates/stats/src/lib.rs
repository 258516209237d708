//! Statistics with no I/O: the special functions, A/B tests for deployments, and the two-sample
//! tests and distances behind drift detection. Every function matches the value scipy computes
//! on the same input (checked against stored scipy fixtures), so verdicts agree with the tools
//! people compare us to.

pub mod ab;
pub mod chisq;
pub mod distance;
pub mod histogram;
pub mod ks;
pub mod special;
