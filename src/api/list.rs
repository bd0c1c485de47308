//! Svix-style list answers, `{data, iterator, prevIterator, done}`, each
//! named as in the Svix API; the paging itself is `service::list`.

/// Defines a concrete list type per item, named as in the Svix API.
macro_rules! list_response {
    ($name:ident, $item:ty) => {
        #[derive(serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub data: Vec<$item>,
            pub iterator: Option<String>,
            pub prev_iterator: Option<String>,
            pub done: bool,
        }

        impl From<$crate::service::list::Listed<$item>> for $name {
            fn from(l: $crate::service::list::Listed<$item>) -> Self {
                Self {
                    data: l.data,
                    iterator: l.iterator,
                    prev_iterator: l.prev_iterator,
                    done: l.done,
                }
            }
        }
    };
}
pub(crate) use list_response;
