"""The import layering of BUILD.md › Layout: no cycles, and no module imports one of a higher layer."""

import ast
import os

from absl.testing import absltest

from tests import testing

# Lowest first; a module may import modules of its own layer or below (BUILD.md › Layout).
LAYERS = (
    ('errors', 'signals'),
    ('archs', 'task_table', 'recipes', 'linear_specs', 'sizes', 'schedule'),
    ('config',),
    ('runs', 'runfiles'),
    ('summaries', 'layers', 'fused_ops', 'scan', 'floor', 'tasks.idx', 'tasks.sources', 'tasks.base'),
    ('tasks.images', 'tasks.series', 'tasks.memory', 'tasks', 'recurrence', 'linear_layers', 'models', 'torch_blocks',
     'curves', 'probe_figures'),
    ('time_curves',),
    ('runtime', 'probes', 'steps', 'cli'),
    ('loop', 'trials'),
    ('aggregate', 'train', 'sweep', 'bench', 'scan_bench', 'data'),
)


def harness_imports(path):
  """The harness modules a source file imports, anywhere in it (function-level imports too)."""
  imported = set()
  for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('harness'):
      package = node.module[len('harness'):].lstrip('.')
      for alias in node.names:
        name = f'{package}.{alias.name}' if package else alias.name
        imported.add(name if name != 'errors.' else 'errors')
    elif isinstance(node, ast.Import):
      imported.update(a.name[len('harness.'):] for a in node.names if a.name.startswith('harness.'))
  return {name.split('.')[0] if name.split('.')[0] in ('errors',) else name for name in imported}


def modules():
  """{module name (tasks.images): path} of every harness module."""
  root = os.path.join(testing.REPO_ROOT, 'harness')
  found = {}
  for directory, _, names in os.walk(root):
    for name in names:
      if name.endswith('.py'):
        relative = os.path.relpath(os.path.join(directory, name), root)[:-3].replace(os.sep, '.')
        found[relative.replace('.__init__', '') if relative != '__init__' else ''] = os.path.join(directory, name)
  return {name: path for name, path in found.items() if name}


class LayoutTest(absltest.TestCase):

  def test_every_module_has_a_layer_and_imports_only_its_own_or_lower(self):
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    found = modules()
    self.assertEqual(set(found), set(layer_of))
    upward = []
    for name, path in found.items():
      for target in harness_imports(path):
        target = target if target in layer_of else target.rsplit('.', 1)[0]
        if layer_of[target] > layer_of[name]:
          upward.append(f'{name} -> {target}')
    self.assertEmpty(upward)

  def test_no_import_cycles(self):
    found = modules()
    graph = {name: {t if t in found else t.rsplit('.', 1)[0] for t in harness_imports(path)} - {name}
             for name, path in found.items()}
    visiting, done = set(), set()

    def visit(name, chain):
      if name in done:
        return
      self.assertNotIn(name, visiting, f'import cycle: {" -> ".join(chain + [name])}')
      visiting.add(name)
      for target in sorted(graph[name]):
        visit(target, chain + [name])
      visiting.discard(name)
      done.add(name)

    for name in sorted(graph):
      visit(name, [])


if __name__ == '__main__':
  absltest.main()
