"""HAT (SPEC §5): frozen units, cumulative max mask, and the sparsity term's push onto free units."""

import torch


def weights_used_before(tr):
    """Per trunk layer, the weights between units that earlier tasks use fully (mask exactly 1)."""
    st = tr.strategy
    out = []
    for i, layer in enumerate(tr.model.trunk):
        m_out = st.mask(i)
        m_in = st.mask(i - 1) if i > 0 else torch.ones(layer.in_features)
        out.append(torch.minimum(m_out[:, None], m_in[None, :]) == 1.0)
    return out


def test_units_masked_by_earlier_tasks_get_exactly_zero_updates(make_trainer):
    for optimizer, momentum in (("sgd", 0.9), ("adam", 0.0)):
        tr = make_trainer(
            strategy__method="hat",
            optim__optimizer=optimizer,
            optim__momentum=momentum,
            optim__lr=0.01,
            model__hidden=[32, 32],
        )
        tr.run_task(0)
        frozen = weights_used_before(tr)
        used_units = [tr.strategy.mask(i) == 1.0 for i in range(len(tr.model.trunk))]
        assert sum(int(f.sum()) for f in frozen) > 0
        before = [layer.weight.detach().clone() for layer in tr.model.trunk]
        bias_before = [layer.bias.detach().clone() for layer in tr.model.trunk]
        tr.run_task(1)
        for i, layer in enumerate(tr.model.trunk):
            assert torch.equal(layer.weight.detach()[frozen[i]], before[i][frozen[i]]), optimizer
            used = used_units[i]
            assert torch.equal(layer.bias.detach()[used], bias_before[i][used])
        assert any(not torch.equal(layer.weight.detach(), b) for layer, b in zip(tr.model.trunk, before, strict=True))


def test_cumulative_mask_is_the_elementwise_max(make_trainer):
    tr = make_trainer(strategy__method="hat")
    tr.run_task(0)
    tr.run_task(1)
    model = tr.model
    model.hat_s = tr.strategy.smax
    for i in range(len(model.trunk)):
        expected = torch.maximum(model.hat_gate(i, 0), model.hat_gate(i, 1)).detach()
        torch.testing.assert_close(tr.strategy.mask(i), expected)


def test_sparsity_term_pushes_new_tasks_onto_free_units(make_trainer):
    # the term's gradient is zero on units earlier tasks use and positive on free ones ...
    tr = make_trainer(strategy__method="hat", model__hidden=[32, 32])
    tr.run_task(0)
    tr.strategy.before_batch(1, 0, 10)  # start of an epoch: s = 1/s_max, no gate is saturated
    x = tr.tasks.tasks[1].train.inputs(slice(0, 8))
    loss = tr.strategy.extra_loss(1, x, tr.model.features(x, 1))
    grad = torch.autograd.grad(loss, tr.model.hat_embeddings[0].weight)[0][1]
    used = tr.strategy.mask(0) == 1.0
    assert used.any() and (~used).any()
    assert torch.all(grad[used] == 0) and torch.all(grad[~used] > 0)

    # ... so with it a new task claims fewer units that were still free
    def newly_claimed(c):
        trainer = make_trainer(strategy__method="hat", strategy__hat_c=c, model__hidden=[32, 32], optim__epochs=4)
        trainer.run_task(0)
        first = [trainer.strategy.mask(i).clone() for i in range(2)]
        trainer.run_task(1)
        trainer.model.hat_s = trainer.strategy.smax
        return sum(int(((trainer.model.hat_gate(i, 1) > 0.5) & (first[i] < 0.5)).sum()) for i in range(2))

    assert newly_claimed(0.75) < newly_claimed(0.0)
