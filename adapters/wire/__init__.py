"""The inbound wire types, one ``msgspec.Struct`` per ``reflow.in.*`` subject, by area:

- ``fields``: constrained field types (ids, money, times, ...), the base struct, nested structs;
- ``orders``: what shops and suppliers say about orders (placed, changed, cancelled, after-sales,
  tracking, intercept answers, allocation cancels);
- ``catalog``: what sets up routing (links, codes, stock rules, suppliers, offers, prices, shops,
  merchants).

``adapters.messages`` puts them together: subjects, ``decode``, dead-letter reasons, schemas.
"""
