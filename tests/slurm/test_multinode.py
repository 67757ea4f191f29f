"""Multi-node jobs on a real two-node Slurm cluster: each node its own network namespace, hostname
and address (tests/slurm/netns_cluster.sh). The real scripts, tiny CPU overrides:
- tasks on both nodes find each other over gloo through slurm/lib.sh's rendezvous, each node a
  host of its own; a second cluster beside the first takes another subnet, leaves nothing behind;
- slurm/datagen.sh's array spreads over both nodes and still writes one complete dataset;
- slurm/train_s.sh on 2 nodes (one task each, gloo between the hosts), preempted twice, ends with
  weights bit-identical to an uninterrupted 2-node run;
- the eval watcher (slurm/eval.sh) on one node scores every checkpoint of training on the other.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from netns_cluster import netns_cluster

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "slurm" / "train_s.sh")
STEP_LINE = re.compile(r"^step\s+(\d+) \|", re.M)
# Steps of the preempted run: enough that neither stop lands after the end, as the job trains on
# while the signal travels (seen: 0.2 to 1.2 s, 5 to 28 steps of ~45 ms on a busy machine; an
# idle one steps faster). The steps are cheap next to the job's start-up.
MAX_STEPS = 200
# train_s.sh asks for 4 nodes x 8 GPUs: two one-task CPU nodes instead.
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0"]


def job_env(tmp_path: Path) -> dict[str, str]:
    return {"PHYWORLD_LOG_ROOT": str(tmp_path / "logs"), "PHYWORLD_PYTHON": sys.executable}


def train_args(data: Path, run: Path, steps: int, *overrides: str) -> list[str]:
    """slurm/train_s.sh's arguments for a tiny CPU run."""
    return [
        str(REPO / "configs" / "train" / "tiny_cpu.yaml"),
        "model.size=tiny",
        f"data.path={data}",
        f"output_dir={run}",
        f"max_steps={steps}",
        "parallel.micro_batch_size=2",
        "logging.every_steps=1",
        "logging.video_every_steps=0",
        *overrides,
    ]


def subnet_k(cluster_dir: Path) -> str:
    """K of the cluster's subnet 10.213.K.0/24 (netns_cluster.sh records it in net.env)."""
    return re.search(r"K=(\d+)", (cluster_dir / "net.env").read_text()).group(1)


@pytest.mark.slow
def test_a_second_cluster_takes_another_subnet_and_leaves_nothing_behind(slurm_two_nodes) -> None:
    """Clusters coexist (several test sessions on one machine): a second one takes a subnet of
    its own, runs a job, and once stopped no namespace, link, address or route of it is left."""
    with netns_cluster(nodes=1, cpus=1) as (env, cluster_dir):
        k = subnet_k(cluster_dir)
        assert k != subnet_k(slurm_two_nodes.dir)
        ran = subprocess.run(["srun", "hostname"], env=env, capture_output=True, text=True)
        assert ran.stdout.strip() == "node1", ran.stderr
    left = subprocess.run(
        "ip -o link; ip netns list; ip -4 addr; ip -4 route show table all",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"pw{k}-" not in left and f"10.213.{k}." not in left, left


# One task of the probe: what it sees of its host, then a gloo all-gather over every task.
PROBE = """
import json, os, socket, subprocess
import torch.distributed as dist
from training.distributed import launcher_env

shm = f"/dev/shm/pw-probe-{os.environ['SLURM_PROCID']}"
open(shm, "w").close()
launcher_env()
dist.init_process_group("gloo")
host = socket.gethostname()
me = {
    "host": host,
    "addr": socket.gethostbyname(host),
    "master": f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
    "local_rank": os.environ["LOCAL_RANK"],
    "routes": subprocess.run(["ip", "-4", "route"], capture_output=True, text=True)
    .stdout.splitlines(),
}
everyone = [None] * dist.get_world_size()
dist.all_gather_object(everyone, me)  # also a barrier: every task has made its /dev/shm file
me["shm"] = sorted(f for f in os.listdir("/dev/shm") if f.startswith("pw-probe"))
dist.barrier()
os.remove(shm)
with open(f"rank{dist.get_rank()}.json", "w") as f:
    json.dump({"me": me, "everyone": everyone}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_each_node_is_a_host_of_its_own(slurm_two_nodes, tmp_path: Path) -> None:
    """srun from the test process starts 2 tasks on each node, which find each other over gloo
    through lib.sh's rendezvous (the first node's address). Each node has its own name, address
    and /dev/shm, and no route off the cluster's subnet."""
    (tmp_path / "probe.py").write_text(PROBE)
    slurm_two_nodes.run(
        "srun", "--nodes=2", "--ntasks-per-node=2", "bash", "-c",
        f'source {REPO}/slurm/lib.sh && phyworld_rendezvous && exec "$0" probe.py',
        sys.executable, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    tasks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(4)]
    everyone = tasks[0]["everyone"]
    assert all(t["everyone"] == everyone for t in tasks)  # the all-gather reached every task
    assert [t["host"] for t in everyone] == ["node1", "node1", "node2", "node2"]  # block layout
    assert [t["local_rank"] for t in everyone] == ["0", "1", "0", "1"]
    addr = {t["host"]: t["addr"] for t in everyone}
    assert addr["node1"] != addr["node2"] and not ipaddress.ip_address(addr["node1"]).is_loopback
    assert {t["master"].split(":")[0] for t in everyone} == {addr["node1"]}
    # one route, the cluster's subnet: nothing else is reachable from a node
    assert all(len(t["routes"]) == 1 for t in everyone), everyone
    subnet = ipaddress.ip_network(everyone[0]["routes"][0].split()[0])
    assert all(ipaddress.ip_address(a) in subnet for a in addr.values())
    # a node sees its own tasks' files in /dev/shm, not the other node's
    for t in tasks:
        local = [r for r, o in enumerate(everyone) if o["host"] == t["me"]["host"]]
        assert t["me"]["shm"] == [f"pw-probe-{r}" for r in local], t


@pytest.fixture(scope="module")
def dataset(slurm_two_nodes, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """48 tiny uniform-motion videos written by slurm/datagen.sh: 4 one-core array tasks on two
    2-CPU nodes, then the merge. Returns the dataset and the node each array task ran on."""
    tmp = tmp_path_factory.mktemp("datagen")
    out = tmp / "uniform_tiny"
    printed = slurm_two_nodes.run(
        str(REPO / "slurm" / "datagen.sh"), "--workers", "4", "--time", "00:10:00", "--mem", "1G",
        str(REPO / "configs" / "data" / "uniform_base.yaml"), f"output={out}",
        "sampling=random", "count=48", "part_size=12", "frames=8", "resolution=32",
        "progress=false", **job_env(tmp),
    )  # fmt: skip
    array, merge = re.search(r"^(\d+) (\d+)$", printed, re.M).groups()
    slurm_two_nodes.wait(merge, {"COMPLETED"}, timeout=600)
    hosts = [slurm_two_nodes.job(f"{array}_{k}")["BatchHost"] for k in range(4)]
    return out, hosts


@pytest.mark.slow
def test_datagen_array_spreads_over_both_nodes(dataset: tuple[Path, list[str]]) -> None:
    from phyworld.data.shards import iter_samples, verify_manifest

    out, hosts = dataset
    assert set(hosts) == {"node1", "node2"}, hosts
    assert verify_manifest(str(out))["count"] == 48
    ids = [s["id"] for s in iter_samples(str(out))]
    assert len(ids) == len(set(ids)) == 48


def attempts(log: str) -> dict[int, list[int]]:
    """Steps logged by each attempt (SLURM_RESTART_COUNT) of a job, from its appended output."""
    parts = re.split(r"SLURM_RESTART_COUNT=(\d+)", log)
    steps: dict[int, list[int]] = {}
    for count, text in zip(parts[1::2], parts[2::2]):
        steps.setdefault(int(count), []).extend(int(s) for s in STEP_LINE.findall(text))
    return steps


def wait_for_step(log_path: Path, attempt: int, at_least: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = attempts(log_path.read_text() if log_path.is_file() else "").get(attempt)
        if steps and max(steps) >= at_least:
            return
        time.sleep(0.2)
    tail = log_path.read_text()[-3000:] if log_path.is_file() else "(no log)"
    raise AssertionError(f"attempt {attempt} did not reach step {at_least}:\n{tail}")


@pytest.mark.slow
def test_two_node_training_preempted_twice_is_bit_identical(
    slurm_two_nodes, dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Preempted by a `high` job that wants one of its nodes, then requeued from outside
    (`scontrol requeue`): each time the 2-node job checkpoints and resumes where it stopped."""
    data, env = dataset[0], job_env(tmp_path)
    straight, preempted = tmp_path / "straight", tmp_path / "preempted"
    every = "checkpoint.every_steps=1000"  # checkpoints only when stopped and at the end
    job = slurm_two_nodes.submit(
        *TWO_NODES, TRAIN, *train_args(data, preempted, MAX_STEPS, every), **env
    )
    log_path = tmp_path / "logs" / f"phyworld-train-s-{job}.out"

    # 1: a high-priority job that wants all of node2: Slurm preempts the 2-node job (its user
    #    signal, USR1, to the batch shell), which must checkpoint and come back.
    wait_for_step(log_path, attempt=0, at_least=3)
    preemptor = slurm_two_nodes.submit(
        "--partition=high", "--nodelist=node2", "--exclusive",
        f"--output={tmp_path / 'preemptor.out'}", "--wrap=hostname", **env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while int((info := slurm_two_nodes.job(job)).get("Restarts", 0)) == 0:
        assert info.get("JobState") != "COMPLETED", "trained to the end before Slurm preempted it"
        assert time.monotonic() < deadline, f"job {job} was not preempted: {log_path.read_text()}"
        time.sleep(0.2)
    # The uninterrupted reference, beside the rest of the job (1 CPU per node each). Only now:
    # earlier, it could have taken the CPU of node2 that decides whether the job is preempted.
    # In `high`, which nothing preempts.
    ref = slurm_two_nodes.submit(
        "--partition=high", *TWO_NODES, TRAIN, *train_args(data, straight, MAX_STEPS, every), **env
    )
    # 2: once the job runs again and has trained on, an outside requeue (SIGTERM to every task).
    wait_for_step(log_path, attempt=1, at_least=max(attempts(log_path.read_text())[0]) + 3)
    slurm_two_nodes.run("scontrol", "requeue", str(job))

    info = slurm_two_nodes.wait(job, {"COMPLETED"}, timeout=600)
    ref_info = slurm_two_nodes.wait(ref, {"COMPLETED"}, timeout=600)
    slurm_two_nodes.wait(preemptor, {"COMPLETED"}, timeout=60)
    log = log_path.read_text()
    assert info["NodeList"] == ref_info["NodeList"] == "node[1-2]"
    assert (tmp_path / "preemptor.out").read_text().strip() == "node2"
    assert int(info["Restarts"]) == 2, log[-3000:]
    steps = attempts(log)
    assert sorted(steps) == [0, 1, 2], log[-3000:]
    for attempt in (1, 2):  # resumed right after the last step of the attempt before
        assert min(steps[attempt]) == max(steps[attempt - 1]) + 1, (attempt, steps)
    assert max(steps[0]) < max(steps[1]) < MAX_STEPS == max(steps[2])
    assert "rendezvous 10.213." in log  # the first node's namespace address, not a loopback

    final = f"checkpoints/step_{MAX_STEPS:08d}/weights.pt"
    a = torch.load(straight / final, weights_only=True)
    b = torch.load(preempted / final, weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


@pytest.mark.slow
def test_eval_watcher_on_one_node_training_on_the_other(
    slurm_two_nodes, dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Training fills one node (2 tasks, 2 CPUs); the watcher runs on the other, reads each
    checkpoint through the shared filesystem once, and stops when training's last one is scored."""
    env = job_env(tmp_path)
    run = tmp_path / "run"
    train = slurm_two_nodes.submit(
        "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", TRAIN,
        *train_args(dataset[0], run, 30, "checkpoint.every_steps=10", "checkpoint.keep_last=5"),
        **env,
    )  # fmt: skip
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)  # eval.sh refuses a run without it
    # The training set stands in for an eval set: this test is about where the watcher runs.
    sets = [{"name": "uniform_id", "path": str(dataset[0]), "kind": "kinematic", "max_videos": 4}]
    watcher = slurm_two_nodes.submit(
        "--gpus-per-node=0", "--cpus-per-task=1", f"--dependency=after:{train}",
        str(REPO / "slurm" / "eval.sh"), str(REPO / "configs" / "eval" / "tiny_cpu.yaml"),
        f"checkpoint={run}", "watch=true", "poll_s=2", "stop_after_s=120",
        f"sets={json.dumps(sets)}", "sample_steps=2", "floors=false", **env,
    )  # fmt: skip
    train_node = slurm_two_nodes.wait(train, {"COMPLETED"}, timeout=600)["NodeList"]
    watcher_node = slurm_two_nodes.wait(watcher, {"COMPLETED"}, timeout=600)["NodeList"]
    assert {train_node, watcher_node} == {"node1", "node2"}

    written = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*"))
    assert written == [10, 20, 30]
    records = [
        json.loads(line) for line in (run / "eval" / "metrics.jsonl").read_text().splitlines()
    ]
    assert sorted(r["step"] for r in records if r["set"] == "uniform_id") == written
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.out"))
    assert "training finished, every checkpoint evaluated" in logs
