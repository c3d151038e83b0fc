"""On a CUDA machine only (CI has none; the suite skips these): the diffusion domains prepare on the
GPU and a cell runs there end to end."""

from __future__ import annotations

import pytest
import torch

from benchmark.cache import PreparationCache
from benchmark.progress import Progress
from benchmark.runner import CellRequest, execute_cell, prepare_domain, resolve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("domain", ["image", "motion"])
def test_a_diffusion_domain_trains_its_reference_on_the_gpu_and_caches_cpu_weights(domain: str, tmp_path) -> None:
    cell = resolve(CellRequest("dpo", domain, preset="smoke"))
    cache = PreparationCache(tmp_path)
    prepared, _, built = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cuda"), Progress())
    assert built
    assert next(prepared.reference.denoiser.parameters()).is_cuda
    state = torch.load(next((tmp_path / domain).glob("*.pt")), weights_only=True)["domain"]["reference"]
    assert all(t.device.type == "cpu" for t in state.values()), "the cache holds CPU weights, loadable anywhere"
    rec = execute_cell(cell, cache=cache, device="cuda", home=tmp_path)
    assert rec.status == "done", rec.reason
    assert rec.env["cuda"] == torch.cuda.get_device_name(0)
    assert (rec.env["preparation_device"], rec.timings["prepared_now"]) == ("cuda", 0.0), "the GPU preparation, reused"
