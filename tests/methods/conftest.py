import pytest
import torch


@pytest.fixture
def layer():
    """A weight [48, 64] and the Hessian X^T X of correlated inputs X [512, 64] with uneven scales."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 64, generator=g) * 0.05
    mix = torch.randn(64, 64, generator=g) * 0.3 + torch.eye(64)
    x = torch.randn(512, 64, generator=g) @ mix * torch.linspace(0.2, 3, 64)
    return w, x.double().T @ x.double()
