"""A stand-in for torch, to run compare.py and the report's reading of it without CUDA
(PYTHONPATH=this folder): every op returns a tensor that does nothing, and each CUDA event
recorded is 1 ms after the last."""
__version__ = "fake"
float32, bfloat16, float16 = "float32", "bfloat16", "float16"


class version:
    cuda = "fake"


class Tensor:
    def __getattr__(self, name):
        return lambda *a, **k: self

    def __mul__(self, other):
        return self

    __sub__ = __add__ = __matmul__ = __rmul__ = __mul__

    @property
    def T(self):
        return self


def _tensor(*a, **k):
    return Tensor()


rand = randn = randint = softmax = log_softmax = _softmax_backward_data = _tensor


def device(name):
    return name


class Generator:
    def __init__(self, device=None):
        pass

    def manual_seed(self, seed):
        return self


class _Event:
    clock = 0.0

    def __init__(self, enable_timing=False):
        pass

    def record(self):
        _Event.clock += 1.0
        self.at = _Event.clock

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return end.at - self.at


class cuda:
    Event = _Event

    @staticmethod
    def is_available():
        return True

    @staticmethod
    def get_device_name(i):
        return "fake device"

    @staticmethod
    def empty_cache():
        pass
