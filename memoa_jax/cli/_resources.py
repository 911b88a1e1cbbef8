"""Memory: what the devices can hold (`device_memory`), the refusals (exit 2) of a
population or a solve that cannot fit, before anything is compiled, and the process's peak
resident memory.
"""

from ._errors import UsageError, check
from ._options import MAX_AGENTS


def format_bytes(n: int | float) -> str:
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def format_count(n: int) -> str:
    return f"{n:,}" if n < 10**12 else f"{n:.3g}"


def device_memory(n_devices: int = 1) -> tuple[int, str]:
    """The memory the computation can use, in bytes, and what it is: the accelerators'
    (`memory_stats()["bytes_limit"]`, times `n_devices`), else the machine's RAM (CPU
    devices share it)."""
    import os

    import jax

    dev = jax.local_devices()[0]  # (under --distributed: this process's)
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        kind = getattr(dev, "device_kind", dev.platform)
        return int(stats["bytes_limit"]) * n_devices, f"{n_devices} × {kind}"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(ram), "this machine's RAM"


def check_fits(what: str, per_item: int, n: int, unit: str = "agent", n_devices: int = 1):
    """Refuses (exit 2) `n` items of `per_item` bytes each when they exceed the memory of
    the devices: one line with the estimate."""
    need = per_item * n
    memory, where = device_memory(n_devices)
    if need > memory:
        raise UsageError(
            f"{what} cannot fit: about {format_bytes(need)} ({per_item:,} bytes per {unit} × "
            f"{format_count(n)}), more than the {format_bytes(memory)} of {where}"
        )


def check_population_fits(sims, n_agents: int, option: str, n_devices: int = 1):
    """Refuses (exit 2), before anything is compiled, a population the loop's state
    (`memoa_jax.carry_bytes_per_agent`, the largest of the simulations run one after the
    other) cannot hold in
    the devices' memory, or one above `MAX_AGENTS`."""
    check(
        n_agents <= MAX_AGENTS,
        f"{option} {format_count(n_agents)}: at most {MAX_AGENTS:.3g} agents (N and the "
        "agents' indices exact as float64 numbers)",
    )
    import memoa_jax as mj

    per_agent = max(mj.carry_bytes_per_agent(s) for s in sims)
    check_fits(f"{option} {format_count(n_agents)}", per_agent, n_agents, n_devices=n_devices)


def check_population_share(args, sims):
    """Under `--distributed`, once `jax.distributed` is up (the devices are not known
    before): refuses (exit 2) this process's share of the population, N / process count
    rounded up, when the loop's state cannot hold it in its local devices' memory."""
    import jax

    import memoa_jax as mj

    if not sims:
        return
    n, processes = args.n_agents, jax.process_count()
    share = -(-n // processes)
    per_agent = max(mj.carry_bytes_per_agent(s) for s in sims)
    option = getattr(args, "size_option", "--n-agents")
    what = f"{option} {format_count(n)} over {processes} process(es)"
    check_fits(what, per_agent, share, n_devices=jax.local_device_count())
