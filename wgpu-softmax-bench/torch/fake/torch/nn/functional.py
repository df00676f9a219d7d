from torch import _tensor as cross_entropy, _tensor as kl_div  # noqa: F401
