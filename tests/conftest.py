import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tensors in these tests are tiny: on a busy machine extra intra-op threads only wait on
    each other. (Scripts the tests start as subprocesses set OMP_NUM_THREADS themselves.)"""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
