"""Smoke test of tools/bench_speed.py: a --quick run fills every section and its ratios are the times' quotients."""

from __future__ import annotations

import json

import pytest
import torch

from tests.tool_loader import load_tool


def test_quick_run_in_one_process(tmp_path):
    bench = load_tool("bench_speed")
    threads = 2  # not the tool's 1 (nor conftest's), so that a leak would show
    torch.set_num_threads(threads)
    out = tmp_path / "speed.json"
    bench.main(["--quick", "--sections", "scoring,vaal_training,task_step", "--threads", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads  # --threads does not leak into the caller
    saved = json.loads(out.read_text())
    assert saved["settings"]["threads"] == 1

    scoring = saved["scoring"]
    assert set(scoring["seconds"]) == {"segal", "authors' sampler", "floor"} and scoring["images"] == 96 - 9
    s = scoring["seconds"]
    assert scoring["authors_over_segal"] == pytest.approx(s["authors' sampler"] / s["segal"])
    assert scoring["segal_over_floor"] == pytest.approx(s["segal"] / s["floor"])

    for label, width in (("paper_width", 8), ("cpu_width", 4)):
        r = saved["vaal_training"][label]
        assert r["width"] == width and set(r["seconds"]) == {"segal (paper)", "segal (fixed)", "authors' solver"}
        assert r["authors_over_segal_paper"] == pytest.approx(r["seconds"]["authors' solver"] / r["seconds"]["segal (paper)"])

    task = saved["task_step"]
    assert task["size"] == [32, 32] and task["source"] == [64, 64] and task["cache_shape"] == [64, 64]
    assert task["cached_over_bare"] == pytest.approx(task["seconds"]["segal (cached)"] / task["seconds"]["bare step"])


def test_the_authors_models_have_the_papers_shapes():
    bench = load_tool("bench_speed")
    vae, disc = bench.AuthorsVAE(32), bench.AuthorsDiscriminator(32)
    recon, z, mu, logvar = vae(torch.randn(2, 3, 32, 32))
    assert recon.shape == (2, 3, 32, 32) and mu.shape == logvar.shape == z.shape == (2, 32)
    assert vae.encoder[9].out_channels == 1024 and disc(mu).shape == (2, 1)
    assert bool(((disc(mu) > 0) & (disc(mu) < 1)).all())  # their discriminator ends in a sigmoid
    from segal.models.vaal import VAE

    assert sum(p.numel() for p in vae.parameters()) == sum(p.numel() for p in VAE(32, 32, 128).parameters())


@pytest.mark.slow
def test_quick_sharing_section(tmp_path):
    bench = load_tool("bench_speed")
    result = bench.main(["--quick", "--sections", "sharing"])["sharing"]
    assert len(result["two_divided_steps_per_s"]) == len(result["two_all_cores_steps_per_s"]) == 2
    assert result["each_of_two_over_alone_divided"] == pytest.approx(
        sum(result["two_divided_steps_per_s"]) / 2 / result["alone_steps_per_s"])


@pytest.mark.slow
def test_quick_demo_section():
    bench = load_tool("bench_speed")
    result = bench.main(["--quick", "--sections", "demo"])["demo"]
    assert len(result["alone"]["miou"]) == 2 and len(result["two_at_once"]) == 2  # cycle 0 and 1 of each
    assert result["two_at_once"][0]["miou"] == result["two_at_once"][1]["miou"] == result["alone"]["miou"]
    assert result["two_at_once_over_alone"] == pytest.approx(
        max(r["seconds"] for r in result["two_at_once"]) / result["alone"]["seconds"])
