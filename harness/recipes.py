"""Recipes: one flag (`--recipe=NAME`) for the settings of a known system.

A recipe sets defaults; any flag given explicitly overrides it, and the
resolved flags go to the run's flags.txt. Each entry says where the system
comes from and what to expect of it here (measured on 2 CPU cores; README).
"""

RECIPES = {
    'rows_tutorial': dict(
        source='TF1 tutorial: MNIST read row by row, BasicLSTMCell(256) between a 28->256 input projection and '
               'the output layer, state carried from batch to batch',
        flags=dict(task='mnist', view='rows', arch='lstm', units=(256,), input_units=256, forget_bias=1.0,
                   batch_size=256, optimizer='adam', learning_rate=1e-3, lr_schedule='constant', train_steps=10_000,
                   stateful=True)),
    'lstm100_tutorial': dict(
        source='TF1 tutorial: MNIST rows into LSTM(100), no projection, batch 50, Adam 1e-4, 6 epochs',
        flags=dict(task='mnist', view='rows', arch='lstm', units=(100,), input_units=0, batch_size=50,
                   optimizer='adam', learning_rate=1e-4, lr_schedule='constant', epochs=6)),
    'stacked_tutorial': dict(
        source='TF1 tutorial: MultiRNNCell of LSTM(32) and LSTM(64) on MNIST rows, batch 64, Adam 0.01, '
               '10 epochs, with checkpoints',
        flags=dict(task='mnist', view='rows', arch='lstm', units=(32, 64), input_units=0, batch_size=64,
                   optimizer='adam', learning_rate=0.01, lr_schedule='constant', epochs=10)),
    'sin2cos_tutorial': dict(
        source='TF1 tutorial: sin -> cos over 50 streams of 20-step windows, LSTM(10) between per-step input and '
               'output projections, Adam 0.006, state carried between windows',
        flags=dict(task='sin2cos', seq_len=20, batch_size=50, arch='lstm', units=(10,), input_units=10,
                   optimizer='adam', learning_rate=6e-3, lr_schedule='constant', stateful=True, epochs=20)),
    'adding': dict(
        source='Hochreiter & Schmidhuber (1997): the adding problem, T = 100; LSTM(128), Adam 1e-3, clipping at 1',
        flags=dict(task='adding', seq_len=100, arch='lstm', units=(128,), input_units=0, batch_size=50,
                   optimizer='adam', learning_rate=1e-3, lr_schedule='cosine', clip_norm=1.0, train_steps=6000)),
    'copy': dict(
        source='Arjovsky, Shah & Bengio (2016): the copy task, 10 symbols recalled after T = 50 blanks; '
               'LSTM(128), clipping at 1; Adam 2e-3 and a forget-gate bias of 4 (measured here to learn faster '
               'than the paper\'s RMSprop 1e-3)',
        flags=dict(task='copy', seq_len=50, arch='lstm', units=(128,), input_units=0, batch_size=50,
                   optimizer='adam', learning_rate=2e-3, lr_schedule='cosine', clip_norm=1.0, forget_bias=4.0,
                   train_steps=6000)),
    # Long memory at the lengths the linear recurrences exist for, in a fixed time budget (issue 33): one block of
    # 32 units in its paper's form, the tasks' own settings otherwise (batch 50, Adam with cosine decay over the
    # budget, clipping at 1).
    'adding_1000': dict(
        source='The adding problem at T = 1000 (Hochreiter & Schmidhuber 1997), with minLSTM (Feng et al. 2024): '
               'one block of 32 (pre-norm, residual, 4x MLP), batch 50, Adam 1e-3 with cosine decay over a 20-minute '
               'budget of training steps, clipping at 1',
        flags=dict(task='adding', seq_len=1000, arch='minlstm', units=(32,), input_units=0, batch_size=50,
                   optimizer='adam', learning_rate=1e-3, lr_schedule='cosine', clip_norm=1.0, time_budget=20.0)),
    'copy_200': dict(
        source='The copy task with T = 200 blanks (Arjovsky, Shah & Bengio 2016), with the LRU (Orvieto et al. '
               '2023): one block of 32 (pre-norm, GLU; ring |lambda| in [0.9, 0.999]), batch 50, Adam 2e-3 with '
               'cosine decay over a 20-minute budget of training steps, clipping at 1',
        flags=dict(task='copy', seq_len=200, arch='lru', units=(32,), input_units=0, batch_size=50,
                   optimizer='adam', learning_rate=2e-3, lr_schedule='cosine', clip_norm=1.0, time_budget=20.0)),
    'pixel_mnist': dict(
        source='Le, Jaitly & Hinton (2015): MNIST read one pixel at a time, 784 steps; LSTM(128), Adam 1e-3, '
               'clipping at 1',
        flags=dict(task='mnist', view='pixels', arch='lstm', units=(128,), input_units=0, batch_size=128,
                   optimizer='adam', learning_rate=1e-3, lr_schedule='cosine', clip_norm=1.0, epochs=4)),
    'permuted_mnist': dict(
        source='Le, Jaitly & Hinton (2015): pixel MNIST under one fixed permutation of the 784 pixels; LSTM(128), '
               'Adam 1e-3, clipping at 1',
        flags=dict(task='mnist', view='permuted', arch='lstm', units=(128,), input_units=0, batch_size=128,
                   optimizer='adam', learning_rate=1e-3, lr_schedule='cosine', clip_norm=1.0, epochs=4)),
    # The linear recurrences (issue 21), scaled from their papers to what trains on 2 CPU cores: two layers
    # of 64 units instead of 4-6 of 256-512, Adam instead of AdamW with weight decay and dropout, a few
    # epochs instead of 100-200, the last step read by the head (the LRU paper pools over time).
    'lru_pixel': dict(
        source='Orvieto et al. (2023), the LRU on sequential images, scaled: 2 LRU blocks of 64 (pre-norm, GLU), '
               'ring r in [0.9, 0.999], pixel MNIST (784 steps), batch 64, Adam 2e-3 with cosine decay, clipping '
               'at 1, 4 epochs',
        flags=dict(task='mnist', view='pixels', arch='lru', units=(64, 64), input_units=0, lru_r_min=0.9,
                   lru_r_max=0.999, batch_size=64, optimizer='adam', learning_rate=2e-3, lr_schedule='cosine',
                   clip_norm=1.0, epochs=4)),
    'lru_permuted': dict(
        source='The same LRU on permuted pixel MNIST (one fixed order of the 784 pixels)',
        flags=dict(task='mnist', view='permuted', arch='lru', units=(64, 64), input_units=0, lru_r_min=0.9,
                   lru_r_max=0.999, batch_size=64, optimizer='adam', learning_rate=2e-3, lr_schedule='cosine',
                   clip_norm=1.0, epochs=4)),
    'mingru_pixel': dict(
        source='Feng et al. (2024), minGRU in its pre-norm residual block with an MLP, scaled: 2 blocks of 64, a '
               '2x MLP (theirs 4x), pixel MNIST (784 steps), batch 64, Adam 2e-3 with cosine decay, clipping at 1, '
               '4 epochs',
        flags=dict(task='mnist', view='pixels', arch='mingru', units=(64, 64), input_units=0, mlp_expansion=2,
                   batch_size=64, optimizer='adam', learning_rate=2e-3, lr_schedule='cosine', clip_norm=1.0,
                   epochs=4)),
    'mingru_permuted': dict(
        source='The same minGRU on permuted pixel MNIST (one fixed order of the 784 pixels)',
        flags=dict(task='mnist', view='permuted', arch='mingru', units=(64, 64), input_units=0, mlp_expansion=2,
                   batch_size=64, optimizer='adam', learning_rate=2e-3, lr_schedule='cosine', clip_norm=1.0,
                   epochs=4)),
}


def describe():
  """One line per recipe, for `--recipe=list`."""
  width = max(map(len, RECIPES))
  return '\n'.join(f'{name:<{width}}  {recipe["source"]}' for name, recipe in RECIPES.items())
