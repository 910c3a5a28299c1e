//! Which store(s) of the pair served a request, for its access line: a task-local set of sides
//! that the request's task fills in as stores answer (a read's answering store, the legs that
//! took a write) and that the S3 front end reads once the request's handler is done. No lock,
//! no shared state: the record lives and dies with the request's future.

use std::cell::Cell;

use super::Side;

tokio::task_local! {
    static SERVED: Cell<u8>;
}

/// The stores that answered a request: none, the primary, the mirror, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served(u8);

impl Served {
    /// Only the primary (an unmirrored proxy has no other store).
    pub const PRIMARY: Served = Served(1);

    /// `primary`, `mirror`, `primary+mirror`, or `-` when no store answered.
    pub fn label(self) -> &'static str {
        match self.0 {
            0 => "-",
            1 => "primary",
            2 => "mirror",
            _ => "primary+mirror",
        }
    }
}

fn bit(side: Side) -> u8 {
    match side {
        Side::Primary => 1,
        Side::Mirror => 2,
    }
}

/// Notes that `side` answered (a read's answer, or a write it took) for the request running in
/// this task; a no-op outside [`scope`] (background repairs, probes).
pub(crate) fn note(side: Side) {
    let _ = SERVED.try_with(|s| s.set(s.get() | bit(side)));
}

/// Runs `fut` (a request's handler) and returns its output with the stores noted meanwhile.
pub async fn scope<F: Future>(fut: F) -> (F::Output, Served) {
    SERVED
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, Served(SERVED.with(Cell::get)))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_inside_a_scope_are_collected_and_outside_ignored() {
        note(Side::Mirror);
        let ((), served) = scope(async { note(Side::Mirror) }).await;
        assert_eq!(served.label(), "mirror");
        let ((), served) = scope(async {
            tokio::join!(async { note(Side::Primary) }, async { note(Side::Mirror) });
        })
        .await;
        assert_eq!(served.label(), "primary+mirror");
        let ((), served) = scope(async {}).await;
        assert_eq!(served.label(), "-");
        assert_eq!(Served::PRIMARY.label(), "primary");
    }
}
