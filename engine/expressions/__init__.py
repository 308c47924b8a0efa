"""A small, safe expression language for ``router`` conditions.

The source is parsed with :func:`ast.parse` in ``eval`` mode and the tree is interpreted
node by node against a whitelist; nothing is ever handed to Python's ``eval``, ``exec`` or
``compile``. Everything outside the whitelist raises ``ExpressionError`` when the expression
is compiled, so a bad router is refused when the graph is validated.

Allowed: str/int/float/bool/None constants and the JSON-style names ``true``, ``false`` and
``null`` (these win over variables of the same name); variable names; ``a.b`` and ``a["b"]``
/ ``a[0]`` as forgiving lookups (a missing key or index, or any lookup on null, gives null);
comparisons including ``in`` / ``not in`` and chains; ``and`` / ``or`` / ``not`` with Python's
short-circuit semantics; ``+ - * / // %`` and unary ``-`` / ``+`` on numbers (bools are not
numbers here), ``+`` also joining two strings, two lists or two tuples; list, tuple and dict
literals; ``a if c else b``; and calls to the functions of
:mod:`engine.expressions.functions` with positional arguments. Identifiers starting or
ending with ``__`` are refused outright.

String functions (lower, upper, strip) pass null through and the predicates (startswith,
endswith, contains) are false on null, so conditions on absent fields stay forgiving; other
type mismatches raise an ``ExpressionError`` with a message, never a bare ``TypeError``.

Limits keep a hostile expression cheap: the source is at most 2,000 characters, the tree at
most 500 expression nodes nested at most 100 deep, strings built while evaluating at most
100,000 characters, lists or tuples built by ``+`` at most 100,000 items, and sequences cannot
be multiplied (there is no ``**`` either).

Modules: ``values`` (the error and what the others share about values), ``functions``
(what a condition may call), ``parse`` (the whitelist and limits, checked when an
expression is compiled) and ``evaluate`` (:class:`~engine.expressions.evaluate.Expression`,
the interpreter). Import the leaf module; this file re-exports nothing.
"""
