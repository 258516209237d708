//! The LLM gateway: one OpenAI-shaped front for many model deployments. A request is validated
//! ([`request`]), matched to a model group, answered from the cache when it can be ([`cache`]),
//! otherwise routed to one of the group's deployments ([`router`]: weighted, lowest latency,
//! lowest cost or least busy; circuit breakers; fallbacks by error class) through a provider
//! ([`provider`]: any OpenAI-compatible upstream, or the in-process SmolLM2), then priced
//! ([`pricing`]) and recorded ([`usage`]). The HTTP surface lives in the `server` crate.

pub mod anthropic;
pub mod budget;
pub mod cache;
pub mod config;
pub mod error;
pub mod gateway;
pub mod metrics;
pub mod pricing;
pub mod prompts;
pub mod provider;
pub mod request;
pub mod router;
pub mod rules;
pub mod semantic;
pub mod spans;
pub mod tokens;
pub mod usage;
pub mod usage_log;

pub use config::{DeploymentConfig, GatewayConfig, GroupConfig, Strategy};
pub use error::{ErrorClass, GatewayError};
pub use gateway::{Answer, Caller, Gateway, Reply};
pub use request::{Endpoint, LlmRequest};
pub use usage::{Usage, UsageRecord, UsageSink};
