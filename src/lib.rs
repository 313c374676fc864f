//! nbledger: an MCP server that lets several agents edit the same Jupyter
//! notebooks at once, recording every change as an immutable, hash-chained
//! event in an embedded log. See ARCHITECTURE.md for the map.

pub mod audit;
pub mod engine;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod hub;
pub mod ipynb;
pub mod kernels;
pub mod lines;
pub mod notebook;
pub mod paths;
pub mod pause;
pub mod progress;
pub mod projections;
pub mod replay;
pub mod resources;
pub mod room;
pub mod runs;
pub mod store;
pub mod time;
pub mod tools;
pub mod ui;
