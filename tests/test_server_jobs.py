"""REST jobs on a real server: upload → encode → download → decode equals the CLI bit for bit; status fields;
delete; a job survives kill -9 of the server (re-run at the next start) and finished ones stay downloadable."""

from __future__ import annotations

import time

import pytest

from s2vc_clients import S2VCClient, ServerError

from .test_server_common import KEY, cli, client_fixture, frames, server_fixture, write_video


server = server_fixture("jobs", api_keys=KEY)
client = client_fixture()


def test_encode_and_decode_jobs_equal_the_cli(client, tmp_path):
    clip = write_video(tmp_path / "in.y4m", frames(12))
    job = client.submit_job(clip, "encode", rate=1)
    assert job["state"] in ("queued", "running") and len(job["id"]) == 32
    done = client.wait_job(job["id"])
    client.download_result(job["id"], tmp_path / "server.s2vc")
    summary = cli("encode", clip, tmp_path / "cli.s2vc", "--rate", "1")
    assert (tmp_path / "server.s2vc").read_bytes() == (tmp_path / "cli.s2vc").read_bytes()
    assert done["progress"] == {"frames": 12, "total": 12, "fraction": 1.0}
    assert done["bpp"] == pytest.approx(summary["bpp"]) and done["kbps"] == pytest.approx(summary["kbps"])
    assert done["timings"]["started_at"] >= done["timings"]["created_at"] and done["timings"]["running_s"] > 0
    assert done["result"] == {"bytes": (tmp_path / "cli.s2vc").stat().st_size, "format": "s2vc"} and done["error"] is None

    decode = client.wait_job(client.submit_job(tmp_path / "server.s2vc", "decode", format="y4m")["id"])
    client.download_result(decode["id"], tmp_path / "server.y4m")
    cli("decode", tmp_path / "cli.s2vc", tmp_path / "cli.y4m")
    assert (tmp_path / "server.y4m").read_bytes() == (tmp_path / "cli.y4m").read_bytes()
    assert decode["progress"]["frames"] == 12 and (decode["width"], decode["height"]) == (128, 96)


def test_delete_removes_the_job_and_its_result(client, tmp_path):
    job = client.wait_job(client.submit_job(write_video(tmp_path / "in.y4m", frames(2)), "encode")["id"])
    client.delete_job(job["id"])
    for call in (lambda: client.job(job["id"]), lambda: client.download_result(job["id"], tmp_path / "x")):
        with pytest.raises(ServerError) as missing:
            call()
        assert missing.value.status == 404


def test_unknown_model_and_rate_point_are_refused(client, tmp_path):
    clip = write_video(tmp_path / "in.y4m", frames(1))
    with pytest.raises(ServerError) as unknown:
        client.submit_job(clip, "encode", model="../weights")
    assert unknown.value.status == 404 and "unknown model" in unknown.value.detail
    with pytest.raises(ServerError) as rate:
        client.submit_job(clip, "encode", rate=9)
    assert rate.value.status == 422 and "rate point 9" in rate.value.detail


def test_a_job_knows_its_total_at_once_and_reports_psnr(client, tmp_path):
    """Issue 17.9: ``total`` is probed at submission (it stayed null until done); ``psnr`` is computed."""
    clip = write_video(tmp_path / "in.y4m", frames(4))
    job = client.submit_job(clip, "encode")
    assert job["progress"]["total"] == 4
    done = client.wait_job(job["id"])
    assert done["psnr"] is not None and 5 < done["psnr"] < 99
    client.download_result(done["id"], tmp_path / "a.s2vc")
    decode = client.submit_job(tmp_path / "a.s2vc", "decode", format="y4m")
    assert decode["progress"]["total"] == 4
    assert client.wait_job(decode["id"])["psnr"] is None  # no reference for a decode job


def test_incomplete_files_are_refused_not_done(client, tmp_path):
    """Issue 17.5: a file cut at a unit boundary (no END) used to give a job "done" with some of its frames."""
    clip = write_video(tmp_path / "in.y4m", frames(3))
    client.download_result(client.wait_job(client.submit_job(clip, "encode")["id"])["id"], tmp_path / "a.s2vc")
    data = (tmp_path / "a.s2vc").read_bytes()
    (tmp_path / "cut.s2vc").write_bytes(data[:-20])  # without its END unit
    (tmp_path / "tail.s2vc").write_bytes(data + data[64:120])  # bytes after END
    (tmp_path / "head.s2vc").write_bytes(data[:64])  # the header alone
    for name, words in (("cut", "last good frame is frame 2"), ("tail", "after the END unit"), ("head", "no frame decoded")):
        with pytest.raises(ServerError) as refused:
            client.submit_job(tmp_path / f"{name}.s2vc", "decode")
        assert refused.value.status == 400 and words in refused.value.detail, name


def test_jobs_survive_kill_9(server, client, tmp_path):
    """Runs last: it kills the module's server and starts it again on the same data directory."""
    finished = client.wait_job(client.submit_job(write_video(tmp_path / "short.y4m", frames(3)), "encode")["id"])
    client.download_result(finished["id"], tmp_path / "before.s2vc")
    clip = write_video(tmp_path / "long.y4m", frames(36))
    long_job = client.submit_job(clip, "encode")
    deadline = time.monotonic() + 60
    while (status := client.job(long_job["id"]))["progress"]["frames"] == 0 and status["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "running", "the job finished before the server could be killed"
    server.kill()
    orphan = server.data_dir / "uploads" / ("f" * 32 + ".mp4")  # a file no job refers to (a crash between rename and insert)
    orphan.write_bytes(b"left over")
    server.start()

    after = S2VCClient(server.url, KEY)
    assert after.job(finished["id"])["state"] == "done"
    after.download_result(finished["id"], tmp_path / "after.s2vc")
    assert (tmp_path / "after.s2vc").read_bytes() == (tmp_path / "before.s2vc").read_bytes()
    rerun = after.wait_job(long_job["id"], timeout=120)
    assert rerun["attempts"] == 2 and rerun["progress"]["frames"] == 36
    after.download_result(long_job["id"], tmp_path / "long.s2vc")
    cli("encode", clip, tmp_path / "cli_long.s2vc")
    assert (tmp_path / "long.s2vc").read_bytes() == (tmp_path / "cli_long.s2vc").read_bytes()
    assert not orphan.exists()
    after.close()
