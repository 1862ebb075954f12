//! `?limit=&offset=` of the admin list endpoints. The body stays the JSON array scripts
//! already read; the total goes in the `X-Total-Count` header.

use axum::Json;
use onramp_core::CoreError;
use serde::Deserialize;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Page size: default 100, at most 1000. The total is in the `X-Total-Count` header.
    pub limit: Option<i64>,
    /// Entries to skip.
    pub offset: Option<i64>,
}

impl Paging {
    pub fn bounds(&self) -> Result<(i64, i64), CoreError> {
        page_bounds(self.limit, self.offset)
    }
}

/// Checked `(limit, offset)`, defaults applied.
pub fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), CoreError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(CoreError::invalid_input("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(CoreError::invalid_input("offset", "must be 0 or more"));
    }
    Ok((limit, offset))
}

/// A page as the response: the total in a header, the entries as the body.
pub type Paged<T> = ([(&'static str, String); 1], Json<Vec<T>>);

pub fn paged<T>((page, total): (Vec<T>, i64)) -> Paged<T> {
    ([("x-total-count", total.to_string())], Json(page))
}
