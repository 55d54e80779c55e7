"""Planning a search pass over llama.cpp's server slots (agent.model.slot_router): what the server is asked
to evaluate again. The requests themselves need llama.cpp's own server (bench/backends.py runs them)."""

from __future__ import annotations

from agent.model.slot_router import SlotRouter

PROMPT = list(range(100, 400))  # 300 prompt tokens


def ran(router: SlotRouter, *prefixes: list[int]) -> None:
    router.commit(router.plan(list(prefixes)))


def test_first_request_evaluates_the_prompt_once_on_one_slot() -> None:
    router = SlotRouter(4)
    plan = router.plan([PROMPT])
    assert plan.tokens == len(PROMPT)
    assert len(plan.queues) == 1 and not plan.forks


def test_two_children_of_one_node_copy_its_slot_instead_of_evaluating_the_prompt_again() -> None:
    router = SlotRouter(4)
    ran(router, PROMPT)
    plan = router.plan([PROMPT + [1], PROMPT + [2]])
    assert plan.tokens == 2  # one new token each
    assert len(plan.forks) == 1
    source, destination = plan.forks[0]
    assert sorted(plan.queues) == sorted({source, destination})


def test_without_copies_children_of_one_node_queue_on_the_slot_that_holds_it() -> None:
    router = SlotRouter(4, can_fork=False)
    ran(router, PROMPT)
    plan = router.plan([PROMPT + [1], PROMPT + [2], PROMPT + [3]])
    assert plan.tokens == 3 and not plan.forks
    assert [len(queue) for queue in plan.queues.values()] == [3]


def test_branches_continue_on_their_own_slots() -> None:
    router = SlotRouter(4)
    ran(router, PROMPT)
    ran(router, *(PROMPT + [token] for token in (1, 2, 3, 4)))
    plan = router.plan([PROMPT + [token, 9] for token in (4, 3, 2, 1)])  # the same branches, in another order
    assert plan.tokens == 4 and not plan.forks
    assert sorted(plan.queues) == [0, 1, 2, 3]


def test_a_forked_branch_that_diverged_long_ago_is_copied_rather_than_rebuilt() -> None:
    router = SlotRouter(2)
    ran(router, PROMPT)
    ran(router, PROMPT + [1] * 40, PROMPT + [2] * 40)  # two branches 40 tokens deep, one per slot
    plan = router.plan([PROMPT + [1] * 40 + [5], PROMPT + [1] * 40 + [6]])  # branch 2 died; branch 1 forks
    assert plan.tokens == 2
    assert plan.forks == [(0, 1)] or plan.forks == [(1, 0)]


def test_nested_prefixes_of_one_node_stay_on_one_slot() -> None:
    """A node's grammar-forced tokens are scored by requests for each prefix of it, then the node's own."""
    router = SlotRouter(4)
    ran(router, PROMPT)
    plan = router.plan([PROMPT + [7], PROMPT + [7, 8], PROMPT + [7, 8, 9]])
    assert plan.tokens == 3 and not plan.forks
    assert [len(queue) for queue in plan.queues.values()] == [3]
    router.commit(plan)
    assert router.plan([PROMPT + [7, 8, 9, 10]]).tokens == 1
