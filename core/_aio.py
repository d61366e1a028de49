"""Running a component process's main coroutine."""


def run_async(coro):
    """Run a component's main coroutine, on uvloop when it is installed (much faster I/O).

    Components keep large, long-lived caches (informers, watch caches): full garbage
    collections over them stall the loop, so what is loaded by now is frozen out of the
    collector and young collections run less often."""
    import asyncio
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
