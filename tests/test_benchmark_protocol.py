"""benchmarks/protocol.py and deltadq.py's statistics: the cells every results table prints."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import deltadq  # noqa: E402
import protocol  # noqa: E402


def test_score_cells_print_what_a_row_has_and_a_dash_for_the_rest():
    row = {"ppl_quick": {"ppl": 19.4549}, "tasks": {"piqa": {"acc": 0.6431, "acc_stderr": 0.01118}}}
    assert protocol.score_cells(row) == ["19.45", "-", "0.643 ± 0.011", "-", "-"]
    assert len(protocol.score_cells({})) == len(protocol.SCORE_HEAD)


def test_table_has_one_separator_cell_per_column():
    lines = protocol.table(["a", "b"], [["1", "2"]]).splitlines()
    assert lines == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_run_record_names_what_was_measured():
    r = protocol.run_record("ppl_full", ["fp32"])
    assert r["measured"] == "ppl_full" and r["rows"] == ["fp32"] and r["command"].startswith("python ")


@pytest.mark.parametrize("wins,losses,p", [(0, 0, 1.0), (0, 5, 2 / 32), (3, 3, 1.0), (1, 9, 2 * 11 / 1024)])
def test_sign_test_is_the_exact_two_sided_binomial(wins, losses, p):
    assert deltadq.sign_test(wins, losses) == pytest.approx(p)


def test_best_of_each_method_takes_exact_match_then_the_lower_answer_nll():
    def row(method, em, nll):
        return {"method": method, "exact_match": {"exact_match": em}, "answer_loss": {"nll": nll}}

    rows = {"fine-tune": row("none", 0.9, 0.1), "dare 16x": row("dare", 0.5, 0.3), "dare 128x": row("dare", 0.5, 0.2),
            "dare 256x": row("dare", 0.4, 0.1), "bitdelta": row("bitdelta", 0.3, 0.5)}
    assert sorted(deltadq.best_of_each_method(rows)) == ["bitdelta", "dare 128x"]


def test_every_held_out_question_maps_to_its_subtask():
    from llmpress.data.arithmetic import SUBTASKS, subtask, train_eval_split

    _, held = train_eval_split()
    assert {deltadq.subtask_of(ex.prompt) for ex in held} == set(SUBTASKS)
    assert all(deltadq.subtask_of(ex.prompt) == "3_digit_minus" for ex in subtask("3_digit_minus", n=20))
