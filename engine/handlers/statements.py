"""Supplier statements (RC4, RC5): the supplier's statement book issues them."""

from __future__ import annotations

from engine.commands import IssueStatement
from engine.handlers.registry import handles
from engine.statements import Statement, SupplierStatements, statements_uuid
from engine.uow import UnitOfWork


@handles(IssueStatement)
def issue_statement(c: IssueStatement, uow: UnitOfWork) -> Statement:
    return uow.get_or_new(SupplierStatements, statements_uuid(c.supplier_id)).issue(c)
