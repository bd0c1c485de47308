//! Svix-style lists: `{data, iterator, prevIterator, done}`, paged by id.
//!
//! `iterator` continues after the last item; `prevIterator` (`-<first id>`)
//! goes back. Both are plain keys, so pages stay stable while rows arrive.

use super::error::ServiceError;
use super::input::QueryParams;
use crate::store::{Order, Page};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 250;

/// One page of a list, as the API answers it and the dashboard shows it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

/// One request's paging: what to ask the store, and how to read its answer.
pub struct Paging {
    limit: u32,
    backwards: bool,
    pub page: Page,
}

impl Paging {
    /// `natural` is the list's own order; Svix's `order=ascending|descending`
    /// overrides it.
    pub fn from_query(q: &QueryParams, natural: Order) -> Result<Self, ServiceError> {
        let natural = match q.str("order") {
            None => natural,
            Some("ascending") => Order::Ascending,
            Some("descending") => Order::Descending,
            Some(other) => return Err(q.refuse("order", format!("'{other}' is not ascending or descending"))),
        };
        let limit = q.int("limit", 1..=MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as u32;
        let (backwards, beyond) = match q.str("iterator") {
            Some(it) => match it.strip_prefix('-') {
                Some(prev) => (true, Some(prev.to_owned())),
                None => (false, Some(it.to_owned())),
            },
            None => (false, None),
        };
        let order = if backwards { natural.reversed() } else { natural };
        // One extra row tells whether another page follows.
        let page = Page {
            limit: limit + 1,
            beyond,
            order,
        };
        Ok(Self { limit, backwards, page })
    }

    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Listed<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        if self.backwards {
            rows.reverse();
            Listed {
                iterator: rows.last().map(&key),
                prev_iterator: if more {
                    rows.first().map(|r| format!("-{}", key(r)))
                } else {
                    None
                },
                done: false,
                data: rows,
            }
        } else {
            Listed {
                iterator: if more { rows.last().map(&key) } else { None },
                prev_iterator: rows.first().map(|r| format!("-{}", key(r))),
                done: !more,
                data: rows,
            }
        }
    }
}
