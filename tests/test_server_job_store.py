"""The job store on a real SQLite file: what happens to a job's files when it fails (issue 17.9)."""

from __future__ import annotations

from s2vc_server.jobs import JobStore

JOB = "a" * 32


def _store_with_job(tmp_path, attempts: int) -> JobStore:
    store = JobStore(tmp_path)
    (store.uploads / f"{JOB}.mp4").write_bytes(b"video")
    store.insert(JOB, operation="encode", model="default", rate=0, output_format=None, width=None, height=None, fps=None,
                 input_name="in.mp4", input_suffix=".mp4", input_bytes=5)
    for attempt in range(attempts):
        if attempt:
            store._execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (JOB,))  # as recover() re-queues it
        assert store.claim_next() is not None  # ... and the server dies while running it
    return store


def test_a_job_that_crashed_too_often_fails_and_its_upload_is_deleted(tmp_path):
    store = _store_with_job(tmp_path, attempts=3)
    store.recover(max_attempts=3)
    row = store.get(JOB)
    assert row.state == "failed" and "submit the file again" in row.error and "S2VC_JOB_MAX_ATTEMPTS" in row.error
    assert not (store.uploads / f"{JOB}.mp4").exists()
    store.close()


def test_a_job_below_the_limit_is_queued_again_with_its_upload(tmp_path):
    store = _store_with_job(tmp_path, attempts=2)
    store.recover(max_attempts=3)
    assert store.get(JOB).state == "queued" and (store.uploads / f"{JOB}.mp4").exists()
    store.close()


def test_a_failed_job_keeps_no_upload(tmp_path):
    store = _store_with_job(tmp_path, attempts=1)
    store.fail(JOB, "InputError: bad")
    assert store.get(JOB).state == "failed" and not (store.uploads / f"{JOB}.mp4").exists()
    store.close()
