//! Background jobs the admin API starts (rewrap, census, reconcile): each has an id, a state,
//! named progress counters, and can be cancelled. Jobs live in this process; a job that was
//! running when the process stopped is simply started again (every job here is resumable:
//! re-running skips what is done).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// How many finished jobs are remembered.
const KEEP_FINISHED: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Still working.
    Running,
    /// Finished its work.
    Done,
    /// Stopped by an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

/// The handle a job's code works with: progress counters and the cancel flag.
#[derive(Debug)]
pub struct JobHandle {
    cancel: AtomicBool,
    counters: Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>,
}

impl JobHandle {
    /// A counter by name (created at zero on first use); cheap to clone and bump.
    pub fn counter(&self, name: &'static str) -> Arc<AtomicU64> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(counters.entry(name).or_default())
    }

    /// Adds `n` to counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        self.counter(name).fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the job was asked to stop; a job checks between items and returns early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.iter().map(|(k, v)| (*k, v.load(Ordering::Relaxed))).collect()
    }
}

struct Job {
    id: String,
    kind: &'static str,
    params: serde_json::Value,
    started: String,
    handle: Arc<JobHandle>,
    end: Mutex<Option<(JobState, String, Option<String>)>>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// What it does (`rewrap`, `census`, `reconcile`).
    pub kind: &'static str,
    /// Its parameters as given.
    pub params: serde_json::Value,
    /// Where it is.
    pub state: JobState,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it ended (RFC 3339), if it has.
    pub finished: Option<String>,
    /// Its counters.
    pub progress: BTreeMap<&'static str, u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The registry of this process's jobs.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Arc<Job>>>,
}

impl Jobs {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts `work` as a job of `kind` with `params` (shown as given); returns its id.
    /// `work` gets the job's handle and returns an error message on failure.
    pub fn start<F, Fut>(self: &Arc<Self>, kind: &'static str, params: serde_json::Value, work: F) -> String
    where
        F: FnOnce(Arc<JobHandle>) -> Fut,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let mut id_bytes = [0u8; 8];
        rand::fill(&mut id_bytes);
        let handle = Arc::new(JobHandle {
            cancel: AtomicBool::new(false),
            counters: Mutex::new(BTreeMap::new()),
        });
        let job = Arc::new(Job {
            id: format!("{kind}-{}", hex::encode(id_bytes)),
            kind,
            params,
            started: crate::keys::now_rfc3339(),
            handle: Arc::clone(&handle),
            end: Mutex::new(None),
        });
        let id = job.id.clone();
        self.remember(Arc::clone(&job));
        let fut = work(handle);
        tokio::spawn(async move {
            let result = fut.await;
            let state = match &result {
                Ok(()) if job.handle.is_cancelled() => JobState::Cancelled,
                Ok(()) => JobState::Done,
                Err(_) => JobState::Failed,
            };
            tracing::info!(job = %job.id, kind = job.kind, state = ?state, "job ended");
            let mut end = job.end.lock().unwrap_or_else(|p| p.into_inner());
            *end = Some((state, crate::keys::now_rfc3339(), result.err()));
        });
        id
    }

    fn remember(&self, job: Arc<Job>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push(job);
        // Forget the oldest finished jobs beyond the limit; running ones always stay.
        let finished = jobs.iter().filter(|j| j.is_finished()).count();
        let mut excess = finished.saturating_sub(KEEP_FINISHED);
        jobs.retain(|j| {
            if excess > 0 && j.is_finished() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Every remembered job, oldest first.
    pub fn list(&self) -> Vec<JobView> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().map(|j| j.view()).collect()
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<JobView> {
        self.find(id).map(|j| j.view())
    }

    /// The running job of `kind`, if any (for jobs that must not run twice at once).
    pub fn running(&self, kind: &str) -> Option<String> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|j| j.kind == kind && !j.is_finished())
            .map(|j| j.id.clone())
    }

    /// Asks a job to stop; `None` if there is no such job.
    pub fn cancel(&self, id: &str) -> Option<JobView> {
        let job = self.find(id)?;
        job.handle.cancel.store(true, Ordering::Release);
        Some(job.view())
    }

    fn find(&self, id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().find(|j| j.id == id).cloned()
    }
}

impl Job {
    fn is_finished(&self) -> bool {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn view(&self) -> JobView {
        let end = self.end.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (state, finished, error) = match end {
            Some((state, at, error)) => (state, Some(at), error),
            None => (JobState::Running, None, None),
        };
        JobView {
            id: self.id.clone(),
            kind: self.kind,
            params: self.params.clone(),
            state,
            started: self.started.clone(),
            finished,
            progress: self.handle.snapshot(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until_finished(jobs: &Jobs, id: &str) -> JobView {
        for _ in 0..1000 {
            let view = jobs.get(id).expect("job exists");
            if view.state != JobState::Running {
                return view;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("job {id} did not finish");
    }

    #[tokio::test]
    async fn a_job_reports_progress_and_its_end() {
        let jobs = Jobs::new();
        let id = jobs.start("census", serde_json::json!({"bucket": "b"}), |h| async move {
            h.add("objects", 3);
            Ok(())
        });
        let view = until_finished(&jobs, &id).await;
        assert_eq!(view.state, JobState::Done);
        assert_eq!(view.progress.get("objects"), Some(&3));
        assert!(view.finished.is_some());
        let failed = jobs.start("census", serde_json::Value::Null, |_| async {
            Err("store down".into())
        });
        let view = until_finished(&jobs, &failed).await;
        assert_eq!(
            (view.state, view.error.as_deref()),
            (JobState::Failed, Some("store down"))
        );
        assert_eq!(jobs.list().len(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_job_stops_and_says_so() {
        let jobs = Jobs::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let id = jobs.start("rewrap", serde_json::Value::Null, |h| async move {
            let _ = rx.await;
            assert!(h.is_cancelled());
            Ok(())
        });
        assert_eq!(jobs.running("rewrap").as_deref(), Some(id.as_str()));
        assert!(jobs.cancel(&id).is_some());
        tx.send(()).expect("job waits");
        assert_eq!(until_finished(&jobs, &id).await.state, JobState::Cancelled);
        assert!(jobs.cancel("nope").is_none());
        assert!(jobs.running("rewrap").is_none());
    }
}
