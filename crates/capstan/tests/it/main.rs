//! The real `capstan` binary over a socket: the CLI contract, crash safety under kill -9, and the
//! project's tidy rules.

mod binary;
mod crash;
mod db_restart;
mod eval_cli;
mod jobs_cli;
mod llm_cli;
mod retrain_loop;
mod scale_out;
mod tidy;
mod vectors_cli;
