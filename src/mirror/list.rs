//! Listings over two stores. While both stores are up, each page is the merge of both stores'
//! pages (so an object only one store has, while its repair is pending, is listed); with one
//! store down, that store is skipped. The cost: two list requests per page instead of one, in
//! parallel, and a merge of at most two pages in memory.
//!
//! Pages continue by key, not by a store's token: the continuation token the mirror hands out
//! is the last key (or common prefix) of the page, so the next page can come from either store
//! or both, whatever their health is by then.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;

use super::{Mirror, Side, tag};
use crate::backend::{BackendError, BackendResult, ListEntry, ListPage, ListQuery};

/// Objects of one page whose pending tombstones are looked at concurrently.
const VERDICTS_AT_ONCE: usize = 8;

/// Marks the mirror's own continuation tokens.
const TOKEN_PREFIX: &str = "m1.";

/// One item of a merged page, in key order.
enum Item {
    Object(ListEntry),
    Prefix(String),
}

impl Item {
    fn key(&self) -> &str {
        match self {
            Item::Object(o) => &o.key,
            Item::Prefix(p) => p,
        }
    }
}

fn encode_token(key: &str) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(key))
}

fn decode_token(token: &str) -> BackendResult<String> {
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .and_then(|k| String::from_utf8(k).ok())
        .ok_or(BackendError::InvalidArgument("continuation token"))
}

impl Mirror {
    /// One page over both stores (see the module docs).
    pub(super) async fn list_merged(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        let mut q = query.clone();
        if let Some(token) = q.continuation_token.take() {
            let after = decode_token(&token)?;
            q.start_after = Some(q.start_after.map_or(after.clone(), |s| s.max(after)));
        }
        let q = q.skipping_rolled_up();
        let [first, second] = self.read_order();
        if !self.is_up(second) {
            let page = self.read(|side, s| {
                let q = &q;
                async move { s.list_objects(bucket, q).await.map(|p| (side, p)) }
            });
            let (side, page) = page.await?;
            return Ok(merge(vec![(side, page)], q.max_keys));
        }
        let (a, b) = tokio::join!(
            self.timed_read(first, self.store(first).list_objects(bucket, &q)),
            self.timed_read(second, self.store(second).list_objects(bucket, &q))
        );
        let pages = match (a, b) {
            (Ok(a), Ok(b)) => vec![(first, a), (second, b)],
            // One store down, or without the bucket yet (its creation is being repaired).
            (Ok(a), Err(e)) if skippable(&e) => vec![(first, a)],
            (Err(e), Ok(b)) if skippable(&e) => vec![(second, b)],
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let mut page = merge(pages, q.max_keys);
        self.drop_deleted(bucket, &mut page).await;
        Ok(page)
    }

    /// Leaves out of a merged page the objects a pending tombstone says are deleted (the store
    /// that missed the delete still lists them). Costs a look at each such object's sealed
    /// write time in both stores, only while its tombstone is pending.
    async fn drop_deleted(&self, bucket: &str, page: &mut ListPage) {
        let suspects: Vec<String> = page
            .objects
            .iter()
            .filter(|o| {
                self.backlog
                    .records_for(bucket, &o.key)
                    .iter()
                    .any(|r| r.op == super::record::Op::Delete)
            })
            .map(|o| o.key.clone())
            .collect();
        if suspects.is_empty() {
            return;
        }
        let lookups: Vec<_> = suspects.iter().map(|key| self.verdict(bucket, key)).collect();
        let verdicts: Vec<super::Verdict> = futures::stream::iter(lookups)
            .buffered(VERDICTS_AT_ONCE)
            .collect()
            .await;
        let deleted: std::collections::HashSet<&String> = suspects
            .iter()
            .zip(verdicts)
            .filter(|(_, v)| *v == super::Verdict::Deleted)
            .map(|(k, _)| k)
            .collect();
        page.objects.retain(|o| !deleted.contains(&o.key));
    }
}

fn skippable(e: &BackendError) -> bool {
    e.is_outage() || matches!(e, BackendError::NoSuchBucket)
}

/// Merges pages of the same query (the first page's entries win on equal keys) into one page of
/// at most `max_keys` items. A truncated page only vouches for keys up to its last one, so the
/// merge stops there.
fn merge(pages: Vec<(Side, ListPage)>, max_keys: i32) -> ListPage {
    let bound: Option<String> = pages
        .iter()
        .filter(|(_, p)| p.is_truncated)
        .filter_map(|(_, p)| last_key(p))
        .min();
    let mut items: Vec<Item> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut more = pages.iter().any(|(_, p)| p.is_truncated);
    for (side, page) in pages {
        for mut o in page.objects {
            if seen.insert(o.key.clone()) {
                o.etag = tag(std::mem::take(&mut o.etag), side);
                items.push(Item::Object(o));
            }
        }
        for p in page.common_prefixes {
            if seen.insert(p.clone()) {
                items.push(Item::Prefix(p));
            }
        }
    }
    items.sort_by(|x, y| x.key().cmp(y.key()));
    if let Some(bound) = &bound {
        items.retain(|i| i.key() <= bound.as_str());
    }
    let max = usize::try_from(max_keys.max(1)).unwrap_or(1000);
    if items.len() > max {
        items.truncate(max);
        more = true;
    }
    let next = items.last().map(|i| encode_token(i.key())).filter(|_| more);
    let mut page = ListPage {
        is_truncated: more,
        next_continuation_token: next,
        ..ListPage::default()
    };
    for item in items {
        match item {
            Item::Object(o) => page.objects.push(o),
            Item::Prefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

fn last_key(page: &ListPage) -> Option<String> {
    let object = page.objects.last().map(|o| o.key.clone());
    let prefix = page.common_prefixes.last().cloned();
    object.max(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], prefixes: &[&str], truncated: bool) -> ListPage {
        ListPage {
            objects: keys
                .iter()
                .map(|k| ListEntry {
                    key: k.to_string(),
                    size: 1,
                    etag: "e".into(),
                    last_modified: None,
                    metadata: None,
                })
                .collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            is_truncated: truncated,
            next_continuation_token: truncated.then(|| "store-token".into()),
        }
    }

    fn keys(p: &ListPage) -> Vec<&str> {
        p.objects.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn a_merge_lists_what_either_store_has_once_in_order() {
        let merged = merge(
            vec![
                (Side::Primary, page(&["a", "c"], &["d/"], false)),
                (Side::Mirror, page(&["b", "c"], &[], false)),
            ],
            1000,
        );
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert_eq!(merged.common_prefixes, ["d/"]);
        assert!(!merged.is_truncated && merged.next_continuation_token.is_none());
        assert_eq!(merged.objects[2].etag, "e@primary", "the first store's entry wins");
        assert_eq!(merged.objects[1].etag, "e@mirror");
    }

    #[test]
    fn a_merge_stops_where_a_truncated_page_stops_and_continues_by_key() {
        // The primary's page stops at "c"; the mirror's goes on to "z": keys after "c" are not
        // vouched for by the primary yet.
        let merged = merge(
            vec![
                (Side::Primary, page(&["a", "c"], &[], true)),
                (Side::Mirror, page(&["b", "x", "z"], &[], false)),
            ],
            1000,
        );
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert!(merged.is_truncated);
        let token = merged.next_continuation_token.expect("a token");
        assert_eq!(decode_token(&token).expect("decodes"), "c");
        // max_keys cuts too.
        let cut = merge(vec![(Side::Primary, page(&["a", "b", "c"], &[], false))], 2);
        assert_eq!(keys(&cut), ["a", "b"]);
        assert!(cut.is_truncated);
    }

    #[test]
    fn foreign_tokens_are_refused() {
        assert!(decode_token("store-token").is_err());
        assert!(decode_token("m1.!!!").is_err());
        assert_eq!(decode_token(&encode_token("k é/1")).expect("round trip"), "k é/1");
    }
}
