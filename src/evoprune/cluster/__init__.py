"""Where the work runs: in this process (the default, no extra import) or on Ray workers, on
this machine (``--workers N``) or on a cluster (``--ray-address``).

The unit of work is one chromosome on one fold; a run's problem (its features and folds) goes to
Ray's object store once and every task refers to it. The same machinery runs the runs and
baselines of a comparison and feature extraction sharded over images. Ray is an optional extra
(``pip install "evoprune[ray]"``) and is imported only when a run asks for more than one worker
or for a cluster. Every evaluation runs with a fixed number of torch threads
(``--threads-per-worker``), in this process too, so that results do not depend on the number of
workers.
"""

from evoprune.cluster.jobs import executor_for, feature_compute, parallel_map
from evoprune.cluster.session import ray_address, ray_session, session_for, uses_ray
from evoprune.cluster.workers import RayExecutor, ThreadsExecutor, torch_threads

__all__ = [
    "RayExecutor",
    "ThreadsExecutor",
    "executor_for",
    "feature_compute",
    "parallel_map",
    "ray_address",
    "ray_session",
    "session_for",
    "torch_threads",
    "uses_ray",
]
