"""CPUs a process may use inside a container: its own cgroup and every ancestor, cgroup v2 and v1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from costeff.runtimes import RuntimeOptions
from costeff.runtimes.cpus import cgroup_cpu_limit, cpu_limit, usable_cpus

HOST_CPUS = len(os.sched_getaffinity(0))


def _v2(root: Path, own: str, limits: dict[str, str]) -> Path:
    """A cgroup v2 mount at ``root`` with ``cpu.max`` per folder, and a /proc/self/cgroup naming ``own``."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / own.strip("/")).mkdir(parents=True, exist_ok=True)
    for folder, value in limits.items():
        (root / folder.strip("/") / "cpu.max").write_text(value + "\n")
    proc = root.parent / "proc_self_cgroup"
    proc.write_text(f"0::{own}\n")
    return proc


def test_nested_v2_takes_the_tighter_parent(tmp_path):
    # A pod limited to 1.5 CPUs whose container says 4: the pod's limit is what the kernel enforces.
    root = tmp_path / "cgroup"
    proc = _v2(root, "/kubepods/pod1/ctr", {"kubepods/pod1": "150000 100000", "kubepods/pod1/ctr": "400000 100000",
                                             "kubepods": "max 100000"})
    limit = cpu_limit(root, proc)
    assert limit.quota_cpus == 1.5
    assert limit.cgroup == str(root / "kubepods" / "pod1")
    assert limit.cpus == min(1.5, HOST_CPUS)
    assert usable_cpus(root, proc) == min(2, HOST_CPUS)


def test_the_process_own_cgroup_limit_is_found_below_the_mount_root(tmp_path):
    # Without a cgroup namespace the root shows the host (no cpu.max there) and the limit is deeper.
    root = tmp_path / "cgroup"
    proc = _v2(root, "/system.slice/docker-abc.scope", {"system.slice/docker-abc.scope": "50000 100000"})
    assert cgroup_cpu_limit(root, proc) == 0.5
    assert usable_cpus(root, proc) == 1  # half a CPU still needs one thread, never zero


def test_max_everywhere_is_no_limit(tmp_path):
    root = tmp_path / "cgroup"
    proc = _v2(root, "/a/b", {"a": "max 100000", "a/b": "max 100000"})
    limit = cpu_limit(root, proc)
    assert limit.quota_cpus is None and limit.cgroup is None
    assert usable_cpus(root, proc) == HOST_CPUS
    assert "affinity" in limit.describe()


def test_a_path_missing_under_the_mount_falls_back_to_what_the_mount_shows(tmp_path):
    # In a cgroup namespace-less container the mount is the container's own cgroup while
    # /proc/self/cgroup still names the host's path to it.
    root = tmp_path / "cgroup"
    proc = _v2(root, "/", {"/": "200000 100000"})
    proc.write_text("0::/kubepods/burstable/pod9/ctr\n")
    assert cgroup_cpu_limit(root, proc) == 2.0


def test_unreadable_or_malformed_files_are_no_limit_not_a_crash(tmp_path):
    root = tmp_path / "cgroup"
    proc = _v2(root, "/a", {"a": "lots 100000"})
    (root / "cpu.max").mkdir()  # a folder where a file belongs: reading it fails
    assert cgroup_cpu_limit(root, proc) is None
    assert cgroup_cpu_limit(root, tmp_path / "no_such_proc_file") is None
    assert usable_cpus(tmp_path / "no_cgroup_here", tmp_path / "nothing") == HOST_CPUS


@pytest.mark.parametrize("controllers", ["cpu,cpuacct", "cpu"])
def test_v1_cpu_controller_own_cgroup_and_ancestors(tmp_path, controllers):
    root = tmp_path / "cgroup"
    mount = root / controllers
    own = mount / "docker" / "abc"
    own.mkdir(parents=True)
    (own / "cpu.cfs_quota_us").write_text("-1\n")  # the container: unlimited
    (own / "cpu.cfs_period_us").write_text("100000\n")
    (mount / "docker" / "cpu.cfs_quota_us").write_text("250000\n")  # its parent: 2.5 CPUs
    (mount / "docker" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"5:memory:/docker/abc\n4:{controllers}:/docker/abc\n0::/\n")
    limit = cpu_limit(root, proc)
    assert limit.quota_cpus == 2.5
    assert limit.cpus == min(2.5, HOST_CPUS)


def test_threads_left_to_costeff_follow_the_cgroup(tmp_path, monkeypatch):
    import costeff.runtimes.cpus as cpus

    root = tmp_path / "cgroup"
    proc = _v2(root, "/ctr", {"ctr": "100000 100000"})
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    assert RuntimeOptions().resolved_threads() == 1
    assert RuntimeOptions(threads=3).resolved_threads() == 3  # an explicit count is the user's choice


@pytest.fixture
def one_cpu_cgroup(tmp_path, monkeypatch):
    """This process seen through a cgroup v2 limit of 1 CPU."""
    import costeff.runtimes.cpus as cpus

    root = tmp_path / "cgroup"
    proc = _v2(root, "/ctr", {"ctr": "100000 100000"})
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    return root


@pytest.fixture
def torch_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_export_lowers_torchs_pool_to_the_cgroup_limit(one_cpu_cgroup, torch_threads, tmp_path):
    from costeff.policy.export import export_module

    torch = torch_threads
    torch.set_num_threads(2)  # what torch picks on a 2-core host, whatever the container allows
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    export_module(model, tmp_path / "p.onnx", (4, 3))
    assert torch.get_num_threads() == 1


def test_a_smaller_torch_pool_is_never_raised(torch_threads):
    from costeff.runtimes.cpus import cap_torch_threads

    torch_threads.set_num_threads(1)
    assert cap_torch_threads() == 1


def test_drift_runs_openvino_with_the_cgroup_threads_and_its_usual_precision(one_cpu_cgroup, tiny_policy, tmp_path,
                                                                             monkeypatch):
    ov = pytest.importorskip("openvino")
    import costeff.runtimes.ov as runtime_ov
    from costeff.drift.runners import open_runner
    from costeff.quantization.openvino import convert

    xml = tmp_path / "served.xml"
    convert(Path(tiny_policy.onnx_path), xml)
    compiled, real = [], runtime_ov.compile_model
    monkeypatch.setattr(runtime_ov, "compile_model", lambda path, options: compiled.append(real(path, options))
                        or compiled[-1])
    served, reference = open_runner(xml), open_runner(xml, reference=True)
    assert [c.get_property("INFERENCE_NUM_THREADS") for c in compiled] == [1, 1]
    # a served IR runs at OpenVINO's own precision for this CPU, as the openvino backend serves it
    default = ov.Core().compile_model(str(xml), "CPU").get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert (served.precision, reference.precision) == (f"openvino {default}", "openvino f32")


def test_every_reports_hardware_block_records_the_fractional_limit(tmp_path, monkeypatch):
    import costeff.runtimes.cpus as cpus
    from costeff.hardware import detect

    root = tmp_path / "cgroup"
    proc = _v2(root, "/ctr", {"ctr": "150000 100000"})
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    assert detect.__wrapped__().to_dict()["cpu_limit"] == min(1.5, HOST_CPUS)


def _real_child_cgroup(quota_us: int) -> Path:
    """A child of this process's real cgroup with a CPU quota (root and a writable cgroupfs only)."""
    from costeff.runtimes import cpus

    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v2 = (cpus.CGROUP_ROOT / "cgroup.controllers").is_file()
    mounts = [cpus.CGROUP_ROOT] if v2 else cpus._v1_mounts(cpus.CGROUP_ROOT, lines)[:1]
    if not mounts:
        pytest.skip("no cpu cgroup controller mounted")
    own = cpus._locate(mounts[0], cpus._own_path(lines, v2=v2))
    child = own / f"costeff-test-{os.getpid()}"
    try:
        child.mkdir()
        if v2:
            (child / "cpu.max").write_text(f"{quota_us} 100000\n")
        else:
            (child / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    except OSError as exc:
        if child.is_dir():
            child.rmdir()
        pytest.skip(f"cannot create a cgroup here: {exc}")
    return child


def test_a_real_kernel_cgroup_quota_is_found(tmp_path):
    # The kernel's own files, not a fake tree: a child process moved into a 0.5-CPU cgroup.
    import subprocess
    import sys

    child = _real_child_cgroup(50000)
    script = "from costeff.runtimes.cpus import cpu_limit; l = cpu_limit(); print(l.quota_cpus, l.usable)"
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                             preexec_fn=lambda: (child / "cgroup.procs").write_text(str(os.getpid())))
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot join the cgroup: {exc}")
    finally:
        child.rmdir()
    assert out.stdout.split() == ["0.5", "1"], out.stderr


def test_the_entrypoint_sizes_native_pools_to_the_usable_cpus_and_keeps_a_users_choice(monkeypatch):
    import costeff.cli as cli
    import costeff.runtimes.cpus as cpus

    monkeypatch.setattr(cpus, "usable_cpus", lambda *a, **k: 3)
    for name in cli.NATIVE_POOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "8")
    cli.size_native_pools()
    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OPENBLAS_NUM_THREADS"] == "3"
    assert os.environ["MKL_NUM_THREADS"] == "8"


def test_the_installed_command_starts_with_its_native_pools_sized(tmp_path):
    import subprocess
    import sys

    from costeff.runtimes.cpus import usable_cpus

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    code = ("import os, sys; import costeff.cli as c; c.main = lambda: print(os.environ['OPENBLAS_NUM_THREADS'], "
            "os.environ['OMP_NUM_THREADS']) or 0; c.entrypoint()")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.split() == [str(usable_cpus())] * 2, out.stderr
