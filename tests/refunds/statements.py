"""A statement log for tests that pin the product's database cost: every statement with the
transaction it ran in, the Stripe sandbox's own statements (its tables are stripe_sandbox_*) apart."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

SANDBOX_TABLES = "stripe_sandbox_"


@dataclass
class Statement:
    sql: str
    transaction: int
    sandbox: bool


@dataclass
class StatementLog:
    statements: list[Statement] = field(default_factory=list)
    _transactions: int = 0
    _open: object = None

    def __enter__(self) -> StatementLog:
        self._wrapper = connection.execute_wrapper(self._record)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._wrapper.__exit__(*exc)

    def _record(self, execute, sql, params, many, context):
        # Outside an atomic block every statement commits on its own (autocommit); inside, the
        # outermost block is the transaction.
        outer = connection.atomic_blocks[0] if connection.in_atomic_block else None
        sandbox = SANDBOX_TABLES in sql
        if outer is None or outer is not self._open:
            if not sandbox or outer is not None:
                self._transactions += 1
            self._open = outer
        self.statements.append(Statement(sql, self._transactions, sandbox))
        return execute(sql, params, many, context)

    @property
    def product(self) -> list[Statement]:
        return [s for s in self.statements if not s.sandbox]

    @property
    def product_transactions(self) -> int:
        return len({s.transaction for s in self.product})

    def report(self) -> str:
        lines = [f"{len(self.product)} product statements in {self.product_transactions} transactions"]
        lines += [f"  [{s.transaction}] {s.sql[:160]}" for s in self.product]
        return "\n".join(lines)
