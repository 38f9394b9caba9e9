import torch

from llmpress.formats.bcq import ZERO_EXPONENT
from llmpress.methods.shiftadd.shifts import round_to_shifts


def test_one_term_is_the_nearest_signed_power_of_two():
    a = torch.tensor([0.3, -0.3, 1.0, 0.74, 0.76, -5.9, 2.0 ** -20])
    exps, neg, val = round_to_shifts(a, 1)
    assert exps.shape == (7, 1) and neg[:, 0].tolist() == [False, True, False, False, False, True, False]
    candidates = torch.exp2(torch.arange(-30, 10, dtype=torch.float64))
    nearest = candidates[(a.abs().double().unsqueeze(1) - candidates).abs().argmin(1)]
    assert torch.equal(val.abs(), nearest)
    assert ((val - a.double()).abs() <= a.abs().double() / 3 + 1e-12).all()  # worst case: 3/2 * 2^e


def test_more_terms_never_worse_and_exact_for_sums_of_powers():
    a = torch.randn(1000, dtype=torch.float64) * 0.01
    errs = [(round_to_shifts(a, t)[2] - a).abs() for t in (1, 2, 3)]
    assert (errs[1] <= errs[0] + 1e-15).all() and (errs[2] <= errs[1] + 1e-15).all()
    assert errs[2].max() < errs[0].max() / 10
    exact = torch.tensor([0.75, -0.625, 2.0 ** -7 + 2.0 ** -9], dtype=torch.float64)
    assert torch.equal(round_to_shifts(exact, 2)[2], exact)


def test_zero_gets_an_empty_term():
    exps, neg, val = round_to_shifts(torch.tensor([0.0, 0.5]), 2)
    assert exps[0].tolist() == [ZERO_EXPONENT, ZERO_EXPONENT] and exps[1, 1] == ZERO_EXPONENT
    assert val[0].abs() < 1e-37 and val[1] == 0.5
