"""Starting or joining Ray, with one clear message when that fails."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evoprune.errors import ConfigError
from evoprune.settings import ClusterSettings

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'evoprune[ray]'"


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address`` (``--ray-address``), else ``RAY_ADDRESS``, else None."""
    return address or os.environ.get("RAY_ADDRESS") or None


#: True inside a Ray task of evoprune's: work there runs in that process (no nested tasks).
IN_WORKER = False


def uses_ray(workers: int, address: str | None) -> bool:
    """Whether a run with these settings needs Ray (more than one worker, or a cluster); never
    inside one of evoprune's Ray tasks."""
    return not IN_WORKER and (int(workers) > 1 or ray_address(address) is not None)


def import_ray() -> Any:
    """The ``ray`` module, or ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"--workers > 1 and --ray-address need Ray, which is not installed: {INSTALL_HINT}"
            " (or run with --workers 1)"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port address must accept a connection (ray.init would wait much longer)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"--ray-address {address}: not an address of the form host:port (for example "
            "127.0.0.1:6379, printed by 'ray start --head') or auto"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with 'ray start --head' and give the address it prints"
        ) from None


@contextmanager
def ray_session(workers: int, address: str | None = None, threads: int = 1) -> Iterator[Any]:
    """Ray for the duration: joined at ``address`` (or ``RAY_ADDRESS``), or started on this
    machine with ``workers`` × ``threads`` CPUs and shut down at the end. A Ray already started
    in this process (a caller's, a test's) is used as it is. Yields the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = ray_address(address)
    if address is not None:
        _check_reachable(address)
    where = f"--ray-address {address}" if address else f"--workers {workers}"
    try:
        ray.init(
            address=address,
            num_cpus=None if address else int(workers) * int(threads),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as exc:  # Ray raises many types (ConnectionError, RuntimeError, ...)
        raise ConfigError(
            f"{where}: Ray could not start ({type(exc).__name__}: {str(exc)[:300]}); check the "
            "address, or that this machine can start local processes, or run with --workers 1"
        ) from None
    log.info("Ray %s: %s CPUs", "joined" if address else "started", cluster_cpus(ray))
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def session_for(cluster: ClusterSettings) -> Iterator[None]:
    """Ray for the block when ``cluster`` (workers, ray_address, threads_per_worker) asks for
    it, so that the jobs inside share one session; nothing otherwise."""
    if not uses_ray(cluster.workers, cluster.ray_address):
        yield
        return
    with ray_session(cluster.workers, cluster.ray_address, cluster.threads_per_worker or 1):
        yield


def cluster_cpus(ray: Any) -> int:
    """CPUs of the Ray cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
