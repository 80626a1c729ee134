//! Batches the alarm-state reads of many controllers into few
//! DescribeAlarms calls.
//!
//! An application with `source = "cloudwatch"` alarms reads their states
//! at every evaluation, one DescribeAlarms call for its names. The
//! applications of one agent tend to fall due together, and one call
//! takes up to [`super::alarms::MAX_NAMES_PER_CALL`] names, while DescribeAlarms' rate
//! quota is far below GetMetricData's: N applications' reads at once were
//! N calls (an audit measured 100 calls in two ticks of 50 applications).
//! A [`BatchingAlarms`] holds the first read of a batch for a short window
//! (20 ms, as [`super::batch`] does for metrics), describes the union of
//! the names read meanwhile (one call per 100), and hands each caller the
//! alarms of its own names. A call that failed as the account or the
//! network fails (throttling, a 5xx, a reset) fails every read of its
//! batch; one refused (permissions, an invalid request) may be refused for
//! some reads' names only (a role whose `cloudwatch:DescribeAlarms` is
//! scoped to alarm ARNs, as `flinkscale iam` writes it, and an application
//! added before the role), so each read of the batch is then described
//! on its own and gets its own answer (a name that does not exist is not
//! an error: it is not in the answer). The names of a read refused on its
//! own are remembered: such a read is left out of later merged calls and
//! described on its own from the start, so that a role that stays too
//! narrow costs one call per refused read and tick, not a refused merged
//! call and then one call per read; an answer to it forgets it (the role
//! was fixed).
//!
//! The batching runs in one tokio task, started on the first read and
//! stopped when the reader is dropped; each batch's call runs in a task of
//! its own, so a slow call does not hold the next batch.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::MetricsError;
use super::alarms::{AlarmStates, DescribedAlarm};

/// How long the first read of a batch waits for others.
pub const WINDOW: Duration = Duration::from_millis(20);

/// Bound of the read queue; callers wait for room beyond it.
const QUEUE_CAPACITY: usize = 1024;

/// How many reads of a refused batch are described at a time, each on its
/// own.
const APART_CONCURRENCY: usize = 4;

/// How many refused reads are remembered; past it they are all forgotten
/// (a bound for reloads that keep renaming alarms, never reached by one
/// application per read).
const MAX_REFUSED: usize = 4096;

/// One caller's read and where its answer goes.
struct Read {
    names: Vec<String>,
    reply: oneshot::Sender<Result<Vec<DescribedAlarm>, MetricsError>>,
}

/// An [`AlarmStates`] that merges concurrent reads into one read of an
/// inner one. See the module documentation.
pub struct BatchingAlarms {
    inner: Arc<dyn AlarmStates>,
    sender: OnceLock<mpsc::Sender<Read>>,
}

impl std::fmt::Debug for BatchingAlarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingAlarms").finish_non_exhaustive()
    }
}

impl BatchingAlarms {
    /// Batches the reads of `inner`.
    pub fn new<S: AlarmStates + 'static>(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            sender: OnceLock::new(),
        }
    }

    /// The queue to the batching task, which is started on first use.
    fn sender(&self) -> &mpsc::Sender<Read> {
        self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(run_batches(self.inner.clone(), receiver));
            sender
        })
    }
}

#[async_trait]
impl AlarmStates for BatchingAlarms {
    async fn describe_named(&self, names: &[String]) -> Result<Vec<DescribedAlarm>, MetricsError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let read = Read {
            names: names.to_vec(),
            reply,
        };
        let gone = || MetricsError::Source("the alarm reader stopped".to_owned());
        self.sender().send(read).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The names of the reads refused on their own, each read's sorted.
#[derive(Default)]
struct Refused(std::sync::Mutex<BTreeSet<Vec<String>>>);

/// The names, sorted, each once.
fn sorted_unique<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    names
        .into_iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Refused {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Vec<String>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, names: &[String]) -> bool {
        self.lock().contains(&sorted_unique(names))
    }

    /// Remembers a read refused on its own, forgets one answered; any
    /// other failure (throttling, the network) says nothing of the role.
    fn note(&self, names: &[String], answer: &Result<Vec<DescribedAlarm>, MetricsError>) {
        let mut refused = self.lock();
        match answer {
            Ok(_) => {
                refused.remove(&sorted_unique(names));
            }
            Err(MetricsError::Permission(_) | MetricsError::Invalid(_)) => {
                if refused.len() >= MAX_REFUSED {
                    refused.clear();
                }
                refused.insert(sorted_unique(names));
            }
            Err(_) => {}
        }
    }
}

/// Gathers reads into batches until every sender is gone.
async fn run_batches(inner: Arc<dyn AlarmStates>, mut receiver: mpsc::Receiver<Read>) {
    let refused = Arc::new(Refused::default());
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + WINDOW;
        loop {
            tokio::select! {
                read = receiver.recv() => match read {
                    Some(read) => batch.push(read),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        tokio::spawn(describe_batch(inner.clone(), batch, refused.clone()));
    }
}

/// Describes the union of the batch's names and answers each read with
/// the alarms of its own names; the reads refused before, and every read
/// of a merged call refused, are described each on its own.
async fn describe_batch(inner: Arc<dyn AlarmStates>, batch: Vec<Read>, refused: Arc<Refused>) {
    let (mut apart, merged): (Vec<Read>, Vec<Read>) = batch
        .into_iter()
        .partition(|read| refused.contains(&read.names));
    if !merged.is_empty() {
        let names = sorted_unique(merged.iter().flat_map(|read| &read.names));
        let result = inner.describe_named(&names).await;
        let refusal = matches!(
            result,
            Err(MetricsError::Permission(_) | MetricsError::Invalid(_))
        );
        if refusal && merged.len() > 1 {
            apart.extend(merged);
        } else {
            if let [read] = merged.as_slice() {
                refused.note(&read.names, &result);
            }
            for read in merged {
                let answer = match &result {
                    Ok(alarms) => Ok(alarms
                        .iter()
                        .filter(|alarm| read.names.contains(&alarm.name))
                        .cloned()
                        .collect()),
                    Err(error) => Err(error.clone()),
                };
                // A caller that stopped waiting (a stop, a reload) wants
                // nothing.
                let _ = read.reply.send(answer);
            }
        }
    }
    use futures_util::StreamExt;
    // A few at a time: DescribeAlarms' rate quota is low, and a burst of
    // one call per application would be throttled.
    let (inner, refused) = (&inner, &refused);
    futures_util::stream::iter(apart)
        .filter(|read| std::future::ready(!read.reply.is_closed()))
        .for_each_concurrent(APART_CONCURRENCY, |read| async move {
            let answer = inner.describe_named(&read.names).await;
            refused.note(&read.names, &answer);
            let _ = read.reply.send(answer);
        })
        .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers every name that does not start with `missing` as an alarm
    /// in ALARM, and remembers each call's names.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        fail: bool,
        /// Refuses any call naming an alarm that starts with this, as a
        /// role scoped to other alarms' ARNs does.
        refuse: Mutex<Option<&'static str>>,
        /// How long each call takes, and the most calls seen at once.
        delay: Option<Duration>,
        in_flight: std::sync::atomic::AtomicUsize,
        most_in_flight: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl AlarmStates for Arc<Fake> {
        async fn describe_named(
            &self,
            names: &[String],
        ) -> Result<Vec<DescribedAlarm>, MetricsError> {
            self.calls.lock().unwrap().push(names.to_vec());
            if let Some(delay) = self.delay {
                use std::sync::atomic::Ordering::SeqCst;
                let now = self.in_flight.fetch_add(1, SeqCst) + 1;
                self.most_in_flight.fetch_max(now, SeqCst);
                tokio::time::sleep(delay).await;
                self.in_flight.fetch_sub(1, SeqCst);
            }
            if self.fail {
                return Err(MetricsError::Throttled("Rate exceeded".to_owned()));
            }
            if let Some(prefix) = *self.refuse.lock().unwrap()
                && names.iter().any(|name| name.starts_with(prefix))
            {
                return Err(MetricsError::Permission(format!(
                    "AccessDenied: not authorized to perform cloudwatch:DescribeAlarms on {prefix}"
                )));
            }
            Ok(names
                .iter()
                .filter(|name| !name.starts_with("missing"))
                .map(|name| DescribedAlarm {
                    name: name.clone(),
                    state: Some(crate::model::AlarmState::Alarm),
                    ..DescribedAlarm::default()
                })
                .collect())
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Reads made together are one read of their names' union (each name
    /// once); each caller gets the alarms of its own names only, and a
    /// name that does not exist is simply not in its answer.
    #[tokio::test(start_paused = true)]
    async fn reads_made_together_are_one_call_and_each_gets_its_own() {
        let fake = Arc::new(Fake::default());
        let alarms = BatchingAlarms::new(fake.clone());
        let reads = [
            names(&["a-out", "a-in"]),
            names(&["b-out", "shared"]),
            names(&["shared", "missing-c"]),
        ];
        let answers =
            futures_util::future::join_all(reads.iter().map(|n| alarms.describe_named(n))).await;
        let got: Vec<Vec<String>> = answers
            .into_iter()
            .map(|a| a.expect("answered").into_iter().map(|a| a.name).collect())
            .collect();
        assert_eq!(
            got,
            // In the order of the union's answer, by name, as CloudWatch's.
            vec![
                names(&["a-in", "a-out"]),
                names(&["b-out", "shared"]),
                names(&["shared"]),
            ]
        );
        assert_eq!(
            *fake.calls.lock().unwrap(),
            vec![names(&["a-in", "a-out", "b-out", "missing-c", "shared"])]
        );
        // A read after the window is a batch of its own.
        alarms
            .describe_named(&names(&["a-out"]))
            .await
            .expect("answered");
        assert_eq!(fake.calls.lock().unwrap().len(), 2);
    }

    /// A failed call fails every read of its batch, with its class.
    #[tokio::test(start_paused = true)]
    async fn a_failed_call_fails_every_read_of_its_batch() {
        let fake = Arc::new(Fake {
            fail: true,
            ..Fake::default()
        });
        let alarms = BatchingAlarms::new(fake.clone());
        let (a_names, b_names) = (names(&["a"]), names(&["b"]));
        let (a, b) = tokio::join!(
            alarms.describe_named(&a_names),
            alarms.describe_named(&b_names)
        );
        assert!(matches!(a, Err(MetricsError::Throttled(_))), "{a:?}");
        assert!(matches!(b, Err(MetricsError::Throttled(_))), "{b:?}");
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    /// Fails before stop 57: a refusal of one application's alarm names (a
    /// role scoped to the ARNs of the others' alarms, an application added
    /// before the role) failed every application whose read met it in a
    /// batch, blamed on them as a permission failure. Each read is now
    /// described on its own after such a refusal.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_tried_again_read_by_read() {
        let fake = Arc::new(Fake {
            refuse: Mutex::new(Some("new-")),
            ..Fake::default()
        });
        let alarms = BatchingAlarms::new(fake.clone());
        let (a_names, new_names, c_names) =
            (names(&["a-out"]), names(&["new-out"]), names(&["c-out"]));
        let (a, new, c) = tokio::join!(
            alarms.describe_named(&a_names),
            alarms.describe_named(&new_names),
            alarms.describe_named(&c_names)
        );
        assert_eq!(a.expect("a is allowed")[0].name, "a-out");
        assert_eq!(c.expect("c is allowed")[0].name, "c-out");
        assert!(matches!(new, Err(MetricsError::Permission(_))), "{new:?}");
        // The merged call, then one per read.
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(calls[0], names(&["a-out", "c-out", "new-out"]));
        // A lone read's refusal is its own: no second call.
        alarms
            .describe_named(&new_names)
            .await
            .expect_err("refused");
        assert_eq!(fake.calls.lock().unwrap().len(), 5);
    }

    /// Fails before stop 58: a role that stayed too narrow for one
    /// application's alarms cost, at every tick, a refused merged call and
    /// then one call per read of the batch. A read refused on its own is
    /// now described on its own from the next batch on (the others merged),
    /// until it is answered, when it merges again.
    #[tokio::test(start_paused = true)]
    async fn a_refused_read_is_remembered_until_it_is_answered() {
        let fake = Arc::new(Fake {
            refuse: Mutex::new(Some("new-")),
            ..Fake::default()
        });
        let alarms = BatchingAlarms::new(fake.clone());
        let reads = [names(&["a-out"]), names(&["new-out"]), names(&["c-out"])];
        let tick =
            || futures_util::future::join_all(reads.iter().map(|n| alarms.describe_named(n)));
        let calls_since = |from: usize| fake.calls.lock().unwrap()[from..].to_vec();
        // First tick: the merged call, refused, then one call per read.
        let answers = tick().await;
        assert!(matches!(answers[1], Err(MetricsError::Permission(_))));
        assert_eq!(calls_since(0).len(), 4);
        // Second tick: the others merged, the refused one on its own.
        let answers = tick().await;
        assert_eq!(answers[0].as_ref().expect("allowed")[0].name, "a-out");
        assert_eq!(answers[2].as_ref().expect("allowed")[0].name, "c-out");
        assert!(matches!(answers[1], Err(MetricsError::Permission(_))));
        assert_eq!(
            calls_since(4),
            vec![names(&["a-out", "c-out"]), names(&["new-out"])]
        );
        // The role is fixed: the read is answered on its own once, then
        // merged again.
        *fake.refuse.lock().unwrap() = None;
        let answers = tick().await;
        assert_eq!(answers[1].as_ref().expect("allowed now")[0].name, "new-out");
        assert_eq!(calls_since(6).len(), 2);
        let answers = tick().await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(calls_since(8), vec![names(&["a-out", "c-out", "new-out"])]);
        // Throttling says nothing of the role: nothing is remembered.
        let throttled = Arc::new(Fake {
            fail: true,
            ..Fake::default()
        });
        let alarms = BatchingAlarms::new(throttled.clone());
        alarms
            .describe_named(&names(&["x"]))
            .await
            .expect_err("throttled");
        let (x, y) = (names(&["x"]), names(&["y"]));
        let _ = tokio::join!(alarms.describe_named(&x), alarms.describe_named(&y));
        assert_eq!(throttled.calls.lock().unwrap().len(), 2);
    }

    /// A refused batch is described read by read at most
    /// [`APART_CONCURRENCY`] at a time (DescribeAlarms' rate quota is
    /// low): ten reads, each refused, each call taking a second.
    #[tokio::test(start_paused = true)]
    async fn reads_apart_go_a_few_at_a_time() {
        let fake = Arc::new(Fake {
            refuse: Mutex::new(Some("x")),
            delay: Some(Duration::from_secs(1)),
            ..Fake::default()
        });
        let alarms = BatchingAlarms::new(fake.clone());
        let reads: Vec<Vec<String>> = (0..10).map(|k| vec![format!("x{k}")]).collect();
        let answers =
            futures_util::future::join_all(reads.iter().map(|n| alarms.describe_named(n))).await;
        assert!(answers.iter().all(Result::is_err));
        // The merged call, then one per read.
        assert_eq!(fake.calls.lock().unwrap().len(), 11);
        assert_eq!(
            fake.most_in_flight
                .load(std::sync::atomic::Ordering::SeqCst),
            APART_CONCURRENCY
        );
    }
}
