import pytest
from jobqueue import JobQueue


def test_first_in_first_out(tmp_path):
    queue = JobQueue(tmp_path / "jobs.json")
    assert queue.put({"task": "a"}) == 1
    assert queue.put("b") == 2
    assert queue.pending() == 2
    assert queue.take() == (1, {"task": "a"})
    assert queue.pending() == 1
    assert queue.take() == (2, "b")
    assert queue.take() is None


def test_done_and_ids_not_reused(tmp_path):
    path = tmp_path / "jobs.json"
    queue = JobQueue(path)
    queue.put("a")
    job_id, _ = queue.take()
    queue.done(job_id)
    with pytest.raises(KeyError):
        queue.done(job_id)
    with pytest.raises(KeyError):
        queue.done(99)
    assert JobQueue(path).put("b") == 2


def test_done_needs_a_taken_job(tmp_path):
    queue = JobQueue(tmp_path / "jobs.json")
    job_id = queue.put("a")
    with pytest.raises(KeyError):
        queue.done(job_id)


def test_reopened_queue_retakes_unfinished_jobs(tmp_path):
    path = tmp_path / "jobs.json"
    queue = JobQueue(path)
    queue.put("a")
    queue.put("b")
    first, _ = queue.take()
    queue.done(first)
    queue.take()
    again = JobQueue(path)
    assert again.pending() == 1
    assert again.take() == (2, "b")
