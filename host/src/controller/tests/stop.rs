//! A stop asked while the controller waits: a read in flight (the first
//! DescribeApplication, an evaluation's, a GetMetricData, one following an
//! update) is given up at once, where the SDK would have held the stop for
//! up to its 35 s deadline; an update in flight is waited for, its answer
//! recorded, and nothing sent after it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// How long a read that hangs takes: the SDK's deadline for one call.
const HANG: Duration = crate::aws::OPERATION_TIMEOUT;

/// [`FakeTarget`] whose DescribeApplication calls from the `hang_from`-th
/// on (counting from 1) take [`HANG`] before answering, and whose
/// UpdateApplication takes `update_takes` before it takes effect.
struct Slow {
    inner: Arc<FakeTarget>,
    describes: AtomicUsize,
    hang_from: usize,
    update_takes: Duration,
}

impl Slow {
    fn new(inner: &Arc<FakeTarget>, hang_from: usize, update_takes: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: inner.clone(),
            describes: AtomicUsize::new(0),
            hang_from,
            update_takes,
        })
    }
}

#[async_trait]
impl ScalingTarget for Slow {
    async fn describe(&self, a: &str) -> Result<AppState, TargetError> {
        if self.describes.fetch_add(1, Ordering::SeqCst) + 1 >= self.hang_from {
            tokio::time::sleep(HANG).await;
        }
        self.inner.describe(a).await
    }
    async fn rescale(&self, a: &str, kpu: u32, c: &AppState) -> Result<u64, TargetError> {
        tokio::time::sleep(self.update_takes).await;
        self.inner.rescale(a, kpu, c).await
    }
}

/// [`ConstantSource`] whose GetMetricData calls from the `hang_from`-th on
/// take [`HANG`].
struct SlowSource {
    inner: Arc<ConstantSource>,
    fetches: AtomicUsize,
    hang_from: usize,
}

#[async_trait]
impl MetricSource for SlowSource {
    async fn fetch(
        &self,
        queries: &[MetricQuery],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, MetricsError> {
        if self.fetches.fetch_add(1, Ordering::SeqCst) + 1 >= self.hang_from {
            tokio::time::sleep(HANG).await;
        }
        self.inner.fetch(queries, start_ms, end_ms).await
    }
}

/// Runs [`test_app`] (on the [`Doubling`] policy) over `target` and
/// `source` for `before`, asks it to stop, and gives how long the stop
/// took: under paused time, what it waited for after the signal.
async fn stop_after(
    before: Duration,
    target: Arc<dyn ScalingTarget>,
    source: Arc<dyn MetricSource>,
) -> Duration {
    let controller = Controller::new(
        &test_app(),
        false,
        source,
        target,
        Box::new(Doubling),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Events::log_only(),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(controller.run_until_stopped(stopped));
    tokio::time::sleep(before).await;
    let asked = Instant::now();
    stop.send(true).unwrap();
    task.await.unwrap();
    asked.elapsed()
}

/// A source that never hangs, at `cpu` percent.
fn steady(cpu: f64) -> Arc<SlowSource> {
    Arc::new(SlowSource {
        inner: constant(cpu),
        fetches: AtomicUsize::new(0),
        hang_from: usize::MAX,
    })
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_up_a_describe_that_hangs() {
    // The first call (the start's check of MSF's own autoscaling), the
    // first evaluation's, and the second evaluation's (60 s later).
    for (hang_from, before) in [(1, 1), (2, 1), (3, 61)] {
        let target = FakeTarget::new(2, 90);
        let slow = Slow::new(&target, hang_from, Duration::ZERO);
        let took = stop_after(Duration::from_secs(before), slow, steady(50.0)).await;
        assert_eq!(took, Duration::ZERO, "describe {hang_from} hanging");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_up_a_metric_read_that_hangs() {
    for (hang_from, before) in [(1, 1), (2, 61)] {
        let target = FakeTarget::new(2, 90);
        let source = Arc::new(SlowSource {
            inner: constant(50.0),
            fetches: AtomicUsize::new(0),
            hang_from,
        });
        let took = stop_after(Duration::from_secs(before), target, source).await;
        assert_eq!(took, Duration::ZERO, "fetch {hang_from} hanging");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_gives_up_following_an_update_but_not_the_update() {
    // 95 % CPU: 2 -> 4 at the first evaluation. The update takes 20 s to
    // answer; asked to stop 5 s into it, the controller waits the 15 s
    // left for its answer and sends nothing more.
    let target = FakeTarget::new(2, 90);
    let slow = Slow::new(&target, usize::MAX, Duration::from_secs(20));
    let took = stop_after(Duration::from_secs(5), slow, steady(95.0)).await;
    assert_eq!(took, Duration::from_secs(15));
    assert_eq!(target.updates(), vec![(20, 4)]);

    // Following the update (UPDATING for 90 s, read every 60 s): the
    // third DescribeApplication, at 60 s, hangs, and is given up.
    let target = FakeTarget::new(2, 90);
    let slow = Slow::new(&target, 3, Duration::ZERO);
    let took = stop_after(Duration::from_secs(61), slow, steady(95.0)).await;
    assert_eq!(took, Duration::ZERO);
    assert_eq!(target.updates(), vec![(0, 4)]);
}
