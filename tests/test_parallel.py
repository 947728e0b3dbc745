"""Work on several cores: the same numbers as on one, and clear errors when a worker process fails."""

import numpy as np
import pytest
from conftest import tiny_config
from test_train import SMALL

from tinygrok.engine import parallel
from tinygrok.engine.engines import ENGINES
from tinygrok.engine.fast import flat_grad
from tinygrok.engine.parallel import Derivatives
from tinygrok.run.runs import METRICS, Run, RunError
from tinygrok.run.train import chunk_totals, train
from tinygrok.science.commutator import defect_sample
from tinygrok.science.data import make_dataset, sample_batch, stream
from tinygrok.science.model import flatten, init_params

CFG = tiny_config(dtype="float32")


@pytest.fixture(scope="module")
def two_cores():
    with parallel.cores(2):
        yield


def setting(seed: int, cfg=CFG):
    theta = flatten(init_params(cfg, stream(seed, "init")))
    data = make_dataset(cfg.op, cfg.p, 0.5, seed)
    rng = stream(seed, "batches")
    return theta, [sample_batch(data, 16, rng) for _ in range(3)]


def test_workers_import_this_tinygrok():
    """A worker's sys.path[0] is the folder holding this tinygrok package (a checkout run without installing)."""
    assert (parallel.PACKAGE_ROOT / "tinygrok" / "engine" / "parallel.py").samefile(parallel.__file__)


def test_gradients_in_workers_equal_gradients_here(two_cores):
    theta, batches = setting(1)
    jobs = [(theta * scale, *batch) for scale, batch in zip((1.0, 0.9, 1.1), batches)]  # 3 jobs: 2 rounds
    got = parallel.side_by_side(flat_grad, jobs, CFG)
    assert len(parallel._workers) == 1 and len(got) == 3
    for g, job in zip(got, jobs):
        assert g.dtype == np.float32 and np.array_equal(g, flat_grad(*job, CFG))  # bit for bit


def test_batch_gradient_is_the_size_weighted_mean_of_the_shards(two_cores):
    theta, (batch, *_) = setting(2)
    x, y = batch[0][:15], batch[1][:15]  # 15 examples: shards of 7 and 8
    got = parallel.batch_gradient(theta, x, y, CFG)
    shards = flat_grad(theta, x[:7], y[:7], CFG) * (7 / 15) + flat_grad(theta, x[7:], y[7:], CFG) * (8 / 15)
    assert np.array_equal(got, shards)
    np.testing.assert_allclose(got, flat_grad(theta, x, y, CFG), rtol=1e-5, atol=1e-7)  # float32 regrouping
    cfg64 = tiny_config()
    theta64 = theta.astype(np.float64)
    np.testing.assert_allclose(
        parallel.batch_gradient(theta64, x, y, cfg64), flat_grad(theta64, x, y, cfg64), rtol=1e-12, atol=1e-15
    )  # the same mathematics


def test_commutator_sample_is_the_same_on_two_cores(two_cores):
    theta, (a, b, _) = setting(3)
    parallel_sample = defect_sample(theta, a, b, Derivatives(CFG))
    with parallel.cores(1):
        serial_sample = defect_sample(theta, a, b, Derivatives(CFG))
    assert np.array_equal(parallel_sample["delta"], serial_sample["delta"])
    assert parallel_sample["defect"] == serial_sample["defect"] > 0


def test_a_larger_theta_gets_a_larger_worker(two_cores):
    theta, (batch, *_) = setting(4)
    parallel.side_by_side(flat_grad, [(theta, *batch)] * 2, CFG)
    bigger = tiny_config(dtype="float32", d_model=32, d_ff=64)
    theta2, (batch2, *_) = setting(4, bigger)
    assert theta2.nbytes > parallel._workers[0].capacity
    g = parallel.side_by_side(flat_grad, [(theta2, *batch2)] * 2, bigger)
    assert np.array_equal(g[1], flat_grad(theta2, *batch2, bigger))


def test_a_failing_worker_says_why_and_a_dead_one_says_so(two_cores):
    theta, (batch, *_) = setting(5)
    bad_labels = batch[1] + 100  # out of range: the worker's cross-entropy raises IndexError
    with pytest.raises(parallel.WorkerError, match="IndexError"):
        parallel.side_by_side(flat_grad, [(theta, *batch), (theta, batch[0], bad_labels)], CFG)
    expected = flat_grad(theta, *batch, CFG)
    assert np.array_equal(parallel.side_by_side(flat_grad, [(theta, *batch)] * 2, CFG)[1], expected)
    worker = parallel._workers[0]
    worker.process.kill()
    worker.submit(flat_grad, theta, *batch, CFG)
    with pytest.raises(parallel.WorkerError, match="died"):
        worker.result()
    assert np.array_equal(parallel.side_by_side(flat_grad, [(theta, *batch)] * 2, CFG)[1], expected)
    assert parallel._workers[0] is not worker  # replaced


def test_workers_stop_with_their_context():
    theta, (batch, *_) = setting(6)
    with parallel.cores(2):
        parallel.side_by_side(flat_grad, [(theta, *batch)] * 2, CFG)
        process = parallel._workers[0].process
        assert process.poll() is None
    assert process.poll() == 0 and process not in [w.process for w in parallel._workers]


def test_training_gives_the_same_bytes_on_one_and_two_cores(tmp_path, two_cores):
    cfg = SMALL.replace(max_steps=60, probe_every=20)
    train(cfg, Run.create(tmp_path / "two", cfg))
    with parallel.cores(1):
        train(cfg, Run.create(tmp_path / "one", cfg))
    assert (tmp_path / "one" / METRICS).read_bytes() == (tmp_path / "two" / METRICS).read_bytes()


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_batch_gradient_does_not_depend_on_the_cores(shards):
    theta, (batch, *_) = setting(10)
    cfg = CFG.replace(batch_shards=shards)
    with parallel.cores(1):
        one = parallel.batch_gradient(theta, *batch, cfg)
    for n in (2, 3):
        with parallel.cores(n):
            assert np.array_equal(parallel.batch_gradient(theta, *batch, cfg), one)
    np.testing.assert_allclose(one, flat_grad(theta, *batch, CFG), rtol=1e-5, atol=1e-7)  # float32 regrouping


def test_after_a_failure_every_reply_has_been_read():
    """With three cores, the first worker fails and the second succeeds: the next call must not be handed the
    second worker's stale gradient."""
    theta, batches = setting(7)
    bad = (theta, batches[0][0], batches[0][1] + 100)
    with parallel.cores(3):
        with pytest.raises(parallel.WorkerError, match="IndexError"):
            parallel.side_by_side(flat_grad, [(theta, *batches[0]), bad, (theta * 2, *batches[1])], CFG)
        jobs = [(theta * s, *b) for s, b in zip((1.0, 0.5, 0.25), batches)]
        for g, job in zip(parallel.side_by_side(flat_grad, jobs, CFG), jobs):
            assert np.array_equal(g, flat_grad(*job, CFG))


def test_ranges_cut_at_multiples_into_one_range_per_core():
    assert parallel.split(10, 2) == [(0, 5), (5, 10)] and parallel.split(1, 4) == [(0, 1)]
    with parallel.cores(3):
        assert parallel.ranges(10) == [(0, 3), (3, 6), (6, 10)]
        assert parallel.ranges(2) == [(0, 1), (1, 2)]  # never an empty range
        for n, multiple in ((4705, 512), (100, 512), (1024, 512), (7, 1)):
            cuts = parallel.ranges(n, multiple)
            assert cuts[0][0] == 0 and cuts[-1][1] == n and all(a < b for a, b in cuts)
            assert all(b % multiple == 0 for _, b in cuts[:-1])
            assert all(b == c for (_, b), (c, _) in zip(cuts, cuts[1:]))
            assert len(cuts) == min(3, -(-n // multiple))
    with parallel.cores(1):
        assert parallel.ranges(10) == [(0, 10)]


def test_results_that_are_not_gradients_come_back_pickled(two_cores):
    theta, batches = setting(8)
    jobs = [(theta, *batch, 5, ENGINES["fast"]) for batch in batches]  # chunk_totals in chunks of 5 examples
    got = parallel.side_by_side(chunk_totals, jobs, CFG)
    assert got == [chunk_totals(*job, CFG) for job in jobs] and len(got[0]) == 4  # 16 examples: 5 + 5 + 5 + 1


def test_a_function_workers_cannot_import_is_refused_before_anything_is_sent(two_cores):
    theta, (batch, *_) = setting(9)
    with pytest.raises(Exception, match="pickle|lambda"):
        parallel.side_by_side(lambda *args: flat_grad(*args), [(theta, *batch)] * 2, CFG)
    assert np.array_equal(
        parallel.side_by_side(flat_grad, [(theta, *batch)] * 2, CFG)[1], flat_grad(theta, *batch, CFG)
    )


def test_a_run_trained_on_two_cores_resumes_on_one(tmp_path, two_cores):
    cfg = SMALL.replace(max_steps=60)
    train(cfg, Run.create(tmp_path / "whole", cfg))
    half = cfg.replace(max_steps=40)
    train(half, Run.create(tmp_path / "part", half))
    with parallel.cores(1):
        train(cfg, Run(tmp_path / "part"), resume=True)
    assert (tmp_path / "part" / METRICS).read_bytes() == (tmp_path / "whole" / METRICS).read_bytes()


def test_a_checkpoint_cut_into_other_shards_is_refused(tmp_path):
    cfg = SMALL.replace(max_steps=20)
    train(cfg, Run.create(tmp_path / "r", cfg))
    with pytest.raises(RunError, match="2 shard"):
        train(cfg.replace(batch_shards=1, max_steps=40), Run(tmp_path / "r"), resume=True)


def test_training_and_the_analysis_keep_blas_on_one_thread(tmp_path, monkeypatch):
    """How many threads sum a product moves its last bits (a float64 dot of 100,000 numbers differs between one
    and two OpenBLAS threads here), so all that a run records is computed on one BLAS thread per process."""
    from threadpoolctl import threadpool_info

    import tinygrok.run.train as train_module
    from tinygrok.run import geometry

    seen = []

    def spy(fn):
        def wrapped(*args, **kwargs):
            threads = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
            seen.append((fn.__name__, threads, np.float32(1e-20) * np.float32(1e-20)))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(train_module, "train_step", spy(train_module.train_step))
    monkeypatch.setattr(geometry, "curvature_at_saved_thetas", spy(geometry.curvature_at_saved_thetas))
    monkeypatch.setattr(geometry, "analyse_trajectories", spy(geometry.analyse_trajectories))
    cfg = SMALL.replace(max_steps=40)
    with parallel.cores(2):
        train(cfg, Run.create(tmp_path / "r", cfg))
        geometry.analyse(Run(tmp_path / "r"), k=1)
    assert {name for name, _, _ in seen} == {"train_step", "curvature_at_saved_thetas", "analyse_trajectories"}
    assert {threads for _, threads, _ in seen} == {1}
    assert {subnormal for _, _, subnormal in seen} == {0.0}  # 1e-40 is flushed to zero


def test_subnormals_are_flushed_only_inside_the_context():
    tiny, normal = np.float32(1e-20), np.float32(1e-19)
    with parallel.recorded_arithmetic():
        assert tiny * tiny == 0 and np.all(np.full(8, tiny) * tiny == 0)
        assert normal * normal == np.float32(1e-38)  # the smallest normal float32 is 1.18e-38: kept
    assert tiny * tiny == np.float32(1e-40) != 0


def test_workers_flush_subnormals_too(two_cores):
    """A near-zero theta (a collapsed run's) makes subnormal numbers inside the gradient: the workers' gradients
    are the ones computed here with them flushed, which differ from those computed with them kept."""
    theta, batches = setting(0)
    theta = theta * np.float32(1e-4)
    got = parallel.side_by_side(flat_grad, [(theta, *batch) for batch in batches[:2]], CFG)
    with parallel.recorded_arithmetic():
        flushed = [flat_grad(theta, *batch, CFG) for batch in batches[:2]]
    kept = [flat_grad(theta, *batch, CFG) for batch in batches[:2]]
    assert all(np.array_equal(a, b) for a, b in zip(got, flushed))
    assert not any(np.array_equal(a, b) for a, b in zip(got, kept))
