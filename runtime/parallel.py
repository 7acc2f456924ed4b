"""Data-parallel training over MPI: the one module that knows MPI.

``world()`` is the run's communicator. Outside ``mpiexec`` (or under ``mpiexec -n 1``) it is
a trivial one-process world and mpi4py is never imported, so dlrun works without it. Under
``mpiexec -n N`` (N > 1, seen from the launcher's environment: ``PMI_SIZE`` for MPICH/Hydra,
``OMPI_COMM_WORLD_SIZE`` for Open MPI, ``MV2_COMM_WORLD_SIZE`` for MVAPICH) it wraps
mpi4py's ``COMM_WORLD``; without mpi4py that is an error naming ``pip install 'dlrun[mpi]'``.

How a step is split (``Trainer.run``): every rank reads the data and draws the same shuffle;
each global batch of ``m`` rows (the file's ``batch``) is cut into N contiguous shards
(``shard``); rank r runs forward and backward on its ``m_r`` rows, its loss gradient scaled
by ``m_r / m``, so that one ``Allreduce`` (sum) of the flat gradient buffer gives the
one-process mean gradient; every rank then applies the same update, so the weights stay
identical (``check_same_weights`` compares a digest once per epoch).

Faults: a run goes through three phases. Before the first step (``agree``) every rank
reports its status: an error found on any rank (bad input, usually found identically on
all) is printed once, by rank 0 or else the lowest failing rank, and every rank exits with
its code. During the steps (``running``) an exception on one rank is printed as
``rank R: message`` and ends every rank through ``Abort`` (the others may be waiting in a
collective). After the steps each rank is on its own again (rank 0 writes the results).
"""
from __future__ import annotations

import hashlib
import os
import sys

from dlrun.errors import DlrunError, UsageError

# numpy is imported where it is used: ``dlrun check`` asks ``launched_size`` and
# ``launched_rank`` (cli.py) and must stay free of numpy

#: environment variables through which MPI launchers give the number of processes
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: ... and this process's rank, in the same order of launchers
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")

INSTALL_HINT = "pip install 'dlrun[mpi]' (mpi4py with the mpich wheel)"


class PeerFailed(DlrunError):
    """Another rank failed before training started and reported it; this rank exits with
    the same code and prints nothing (``str`` is empty)."""

    def __init__(self, exit_code):
        super().__init__("")
        self.exit_code = int(exit_code)


def launched_size(environ=None) -> int:
    """The number of processes the MPI launcher started (1 when not under one)."""
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = env.get(name)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    return 1


def launched_rank(environ=None) -> int:
    """This process's rank among those the MPI launcher started (0 when not under one), read
    from the launcher's environment, so MPI is not initialised; without such a variable under
    a launcher, the rank of ``world()``."""
    env = os.environ if environ is None else environ
    for name in RANK_VARIABLES:
        value = env.get(name)
        if value:
            try:
                return max(0, int(value))
            except ValueError:
                continue
    return world().rank if launched_size(env) > 1 else 0


def shard(m: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a batch of ``m`` rows that ``rank`` of ``size`` computes:
    contiguous, the first ``m % size`` shards one row longer.

    >>> [shard(10, 3, r) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(int(m), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class World:
    """One process: ``rank`` 0 of ``size`` 1; every collective is the identity."""

    rank = 0
    size = 1

    def __init__(self):
        self.phase = "setup"   # setup -> running -> done (see the module docstring)

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def lead(self) -> bool:
        """The rank that prints and writes files (rank 0)."""
        return self.rank == 0

    # -- collectives (the identity on one process) ------------------------------------
    def sum_into(self, buf) -> None:
        """``buf`` := the sum of every rank's ``buf`` (in place, on every rank)."""

    def sum(self, values):
        """The element-wise float64 sum over ranks of ``values`` (a NumPy array)."""
        import numpy as np

        return np.array(values, np.float64)

    def max_int(self, value: int) -> int:
        return int(value)

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (small, picklable), in rank order, on every rank."""
        return [obj]

    def abort(self, code: int) -> None:
        raise SystemExit(code)

    def on_lead(self, action):
        """Rank 0 alone runs ``action()`` (e.g. writes a file); every rank returns its result,
        or raises its error, once it has finished: a collective, called by every rank."""
        return action()

    # -- faults ---------------------------------------------------------------------------
    def begin(self) -> None:
        """A run's set-up starts (a failure now is settled by ``agree``)."""
        self.phase = "setup"

    def agree(self, error: BaseException | None = None) -> None:
        """Collective at the end of set-up: every rank says whether it failed. Raises, on
        every rank, when any did: the reporting rank (0 if it failed, else the lowest failing
        rank) gets its own error back, the others ``PeerFailed`` with its exit code."""
        self.phase = "running"
        if error is not None:
            raise error

    def fail(self, error: BaseException) -> None:
        """Handle ``error`` raised on this rank; raises (or aborts every rank)."""
        raise error

    def finish(self) -> None:
        """The steps are over: from now on each rank fails on its own."""
        self.phase = "done"


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, DlrunError):
        return int(error.exit_code)
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) and error.code else 1
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 1


def describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, DlrunError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _portable(error: BaseException) -> BaseException:
    """``error`` as the other ranks can receive it: itself when it survives pickling as the
    same type, else a ``DlrunError`` with its text and exit code."""
    import pickle

    try:
        if type(pickle.loads(pickle.dumps(error))) is type(error):
            return error
    except Exception:
        pass
    copy = DlrunError(describe(error))
    copy.exit_code = exit_code_of(error)
    return copy


class MpiWorld(World):
    """``COMM_WORLD`` of mpi4py."""

    def __init__(self, comm):
        super().__init__()
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._hook_uncaught()

    def _hook_uncaught(self):
        # a rank leaving on an uncaught exception would wait in MPI_Finalize while the others
        # wait for it in a collective (measured: a hang); it ends every rank instead
        previous = sys.excepthook

        def hook(kind, value, tb):
            err = sys.__stderr__ or sys.stderr
            print(f"rank {self.rank}: uncaught {kind.__name__}, ending every rank", file=err, flush=True)
            previous(kind, value, tb)
            self.abort(exit_code_of(value) if isinstance(value, BaseException) else 1)

        sys.excepthook = hook

    def sum_into(self, buf):
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)

    def sum(self, values):
        import numpy as np

        buf = np.array(values, np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        return buf

    def max_int(self, value):
        return int(self.comm.allreduce(int(value), op=self._mpi.MAX))

    def gather(self, obj):
        return self.comm.allgather(obj)

    def abort(self, code):
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(int(code) or 1)

    def on_lead(self, action):
        result = error = None
        if self.lead:
            try:
                result = action()
            except BaseException as err:
                error = err
            outcome = ("error", _portable(error)) if error is not None else ("ok", result)
        # rank 0's outcome reaches the others once action() is over (they wait for it here:
        # nobody reads a file rank 0 is still writing)
        kind, value = self.comm.bcast(outcome if self.lead else None, root=0)
        if self.lead:
            if error is not None:
                raise error
            return result
        if kind == "error":
            raise value
        return value

    def agree(self, error=None):
        code = exit_code_of(error) if error is not None else 0
        # (failed?, rank): the reporter is rank 0 when it failed, else the lowest failing rank
        codes = self.comm.allgather(code)
        self.phase = "running"
        failed = [r for r, c in enumerate(codes) if c]
        if not failed:
            return
        self.phase = "done"
        reporter = failed[0]
        worst = max(codes)
        if self.rank == reporter:
            if reporter != 0 and isinstance(error, DlrunError):
                error.args = (f"rank {self.rank}: {error}",) + error.args[1:]
            if isinstance(error, DlrunError) and error.exit_code != worst:
                error.exit_code = worst
            raise error
        raise PeerFailed(worst)

    def fail(self, error):
        if self.phase == "setup":
            self.agree(error)
        if self.phase == "running" and not isinstance(error, PeerFailed):
            print(f"rank {self.rank}: {describe(error)}", file=sys.__stderr__ or sys.stderr, flush=True)
            self.abort(exit_code_of(error))
        raise error


_WORLD = None


def world() -> World:
    """The run's communicator (made once)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _make_world()
    return _WORLD


def current() -> World | None:
    """The communicator if ``world()`` made one, else None."""
    return _WORLD


def _make_world() -> World:
    size = launched_size()
    if size <= 1:
        return World()
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise UsageError(
            f"this process was started by an MPI launcher as one of {size} processes, but mpi4py "
            f"cannot be imported ({err}); install it with {INSTALL_HINT}, or run dlrun without mpiexec")
    return MpiWorld(MPI.COMM_WORLD)


def weights_digest(net) -> str:
    """A digest of the parameters and running statistics of ``net``."""
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    h.update(net.store.flat.tobytes())
    for _, _, a in net.named_state():
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def check_same_weights(comm: World, net, epoch: int) -> None:
    """Refuse to go on when the ranks' weights differ after ``epoch`` (they must stay
    bit-identical: every rank applies the same update to the same summed gradient)."""
    if not comm.parallel:
        return
    digests = comm.gather(weights_digest(net))
    if len(set(digests)) != 1:
        from dlrun.errors import TrainingError

        odd = [r for r, d in enumerate(digests) if d != digests[0]]
        raise TrainingError(
            f"epoch {epoch}: the weights of rank{'s' if len(odd) > 1 else ''} "
            f"{', '.join(map(str, odd))} differ from rank 0's; data-parallel training needs "
            "identical updates on every rank (the same data, dlrun version and MPI library)")
