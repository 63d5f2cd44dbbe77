//! (to be written)

use super::App;
use axum::Router;

pub fn routes() -> Router<App> {
    Router::new()
}
