"""The TrainConfig presets, one per (scale, model): Table A1's models and training settings at
``paper`` scale, and the kit's smaller ``cpu``, ``atlas`` and ``smoke`` versions of them. Why each
one is what it is: :meth:`lshkit.train.TrainConfig.preset`."""

# Both the authors' code and Selfish-RNN evaluate with batch 20.
TABLE_A1 = dict(dataset="ptb", lr=40.0, weight_decay=1.2e-6, nonmono=5, batch_size=20,
                 eval_batch_size=20, bptt=35, clip=0.25)

PRESETS = {
    ("paper", "lstm"): dict(TABLE_A1, emb_size=1500, hidden_size=1500, num_layers=2,
                            dropouts=(0.0, 0.65, 0.65, 0.65), epochs=100),
    ("paper", "rhn"): dict(TABLE_A1, lr=15.0, emb_size=830, hidden_size=830, num_layers=1, depth=10,
                           dropouts=(0.2, 0.65, 0.25, 0.62), tied=True, coupled=True, epochs=500),
    ("cpu", "lstm"): dict(TABLE_A1, emb_size=256, hidden_size=256, num_layers=2,
                          dropouts=(0.0, 0.3, 0.3, 0.3), epochs=40),
    ("atlas", "lstm"): dict(TABLE_A1, emb_size=128, hidden_size=128, num_layers=2,
                            dropouts=(0.0, 0.0, 0.0, 0.0), epochs=30, epoch_tokens=40_000,
                            valid_tokens=10_000),
    ("cpu", "gru"): dict(TABLE_A1, emb_size=256, hidden_size=256, num_layers=2,
                         dropouts=(0.0, 0.3, 0.3, 0.3), epochs=40),
    ("cpu", "rnn"): dict(TABLE_A1, lr=5.0, emb_size=256, hidden_size=256, num_layers=2,
                         dropouts=(0.0, 0.3, 0.3, 0.3), epochs=40),
    ("cpu", "rhn"): dict(TABLE_A1, lr=15.0, emb_size=256, hidden_size=256, num_layers=1, depth=3,
                         dropouts=(0.1, 0.3, 0.1, 0.3), tied=True, coupled=True, epochs=40),
    # Yang et al.'s WikiText-2 command (arXiv 1711.03953; github.com/zihangdai/mos), whose
    # sizes, dropouts, lr, batch and bptt are Table A1's third column; see lshkit.train.TrainConfig.preset.
    ("paper", "awd_mos"): dict(TABLE_A1, dataset="wikitext2", lr=15.0, batch_size=15, eval_batch_size=10,
                               bptt=70, emb_size=300, hidden_size=1150, num_layers=3, last_hidden_size=650,
                               experts=15, dropouts=(0.1, 0.55, 0.2, 0.4), weight_drop=0.5,
                               latent_dropout=0.29, tied=True, epochs=1000),
    # Table A1's training settings, the model shrunk until a PTB token costs 1.4-1.8 times the cpu stacked
    # LSTM's (measured interleaved on one thread): about 6-8 min per PTB epoch on one core, against 4.2.
    ("cpu", "awd_mos"): dict(TABLE_A1, lr=15.0, batch_size=15, eval_batch_size=10, bptt=70, emb_size=96,
                             hidden_size=256, num_layers=3, last_hidden_size=128, experts=2,
                             dropouts=(0.1, 0.3, 0.2, 0.3), weight_drop=0.3, latent_dropout=0.2, tied=True,
                             epochs=40),
    ("smoke", "lstm"): dict(dataset="smoke", emb_size=128, hidden_size=64, num_layers=2,
                            dropouts=(0.0, 0.1, 0.1, 0.1), lr=10.0, batch_size=10, bptt=35, epochs=6),
    ("smoke", "gru"): dict(dataset="smoke", emb_size=128, hidden_size=64, num_layers=2,
                           dropouts=(0.0, 0.1, 0.1, 0.1), lr=10.0, batch_size=10, bptt=35, epochs=6),
    ("smoke", "rnn"): dict(dataset="smoke", emb_size=128, hidden_size=64, num_layers=2,
                           dropouts=(0.0, 0.1, 0.1, 0.1), lr=5.0, batch_size=10, bptt=35, epochs=6),
    ("smoke", "rhn"): dict(dataset="smoke", emb_size=64, hidden_size=64, num_layers=1, depth=3,
                           dropouts=(0.0, 0.1, 0.1, 0.1), tied=True, coupled=True, lr=10.0,
                           batch_size=10, bptt=35, epochs=6),
    # Batch 5 and lr 5: a three-layer stack leaves the unigram plateau within its first two smoke epochs
    # (seeds 0-2; at batch 10 and lr 10 it sat there for two to four).
    ("smoke", "awd_mos"): dict(dataset="smoke", emb_size=64, hidden_size=64, num_layers=3, last_hidden_size=48,
                               experts=3, dropouts=(0.0, 0.1, 0.1, 0.1), weight_drop=0.1, latent_dropout=0.1,
                               tied=True, lr=5.0, batch_size=5, bptt=35, epochs=6),
}


def resolve_scale(scale: str, budget: str, device) -> str:
    """The preset a scale name means for a run: the smoke budget always trains at ``smoke``;
    ``"auto"`` is ``paper`` on CUDA and ``cpu`` elsewhere; any other name is itself."""
    if budget == "smoke":
        return "smoke"
    if scale == "auto":
        return "paper" if str(device).startswith("cuda") else "cpu"
    return scale
