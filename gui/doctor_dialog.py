"""Tools → Check registry: the doctor's findings and a Repair button.

Both the check (it walks every extension folder) and the repair (it writes) run on a worker.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.workers import WorkerPool
from registry.doctor import Finding, diagnose, repair
from registry.store import Registry


class DoctorDialog(QDialog):
    repaired = Signal()
    checked = Signal()

    def __init__(self, registry: Registry, pool: WorkerPool, parent: QWidget | None = None):
        super().__init__(parent)
        self.registry = registry
        self.pool = pool
        self.findings: list[Finding] = []
        self.setWindowTitle("Check registry")
        self.setObjectName("doctorDialog")
        self.resize(620, 380)

        self.summary_label = QLabel("Checking the registry and the extension folders…")
        self.summary_label.setTextFormat(Qt.TextFormat.PlainText)
        self.summary_label.setWordWrap(True)
        self.findings_list = QListWidget()
        self.findings_list.setWordWrap(True)
        self.findings_list.setAccessibleName("Problems found")
        self.done_label = QLabel()
        self.done_label.setTextFormat(Qt.TextFormat.PlainText)
        self.done_label.setWordWrap(True)
        self.done_label.hide()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.repair_button = QPushButton("Repair")
        self.repair_button.setAccessibleName("Repair the problems that can be fixed safely")
        self.repair_button.setEnabled(False)
        self.buttons.addButton(self.repair_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.repair_button.clicked.connect(self.repair)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.findings_list, 1)
        layout.addWidget(self.done_label)
        layout.addWidget(self.buttons)

    def check(self) -> None:
        registry = self.registry
        self.repair_button.setEnabled(False)
        self.pool.start(
            lambda: diagnose(registry),
            registry=registry,
            on_success=self._show_findings,
            on_failure=self._show_failure,
        )

    def repair(self) -> None:
        registry = self.registry
        self.repair_button.setEnabled(False)
        self.summary_label.setText("Repairing…")

        def work() -> tuple[list[str], list[Finding]]:
            return repair(registry), diagnose(registry)

        self.pool.start(
            work, registry=registry, on_success=self._show_repaired, on_failure=self._show_failure
        )

    def _show_findings(self, findings: list[Finding]) -> None:
        self.findings = findings
        self.findings_list.clear()
        for finding in findings:
            text = f"{finding.problem}\n{finding.advice}"
            item = QListWidgetItem(text)
            if not finding.repairable:
                item.setToolTip("Repair cannot fix this one; follow the advice.")
            self.findings_list.addItem(item)
        if findings:
            repairable = sum(1 for f in findings if f.repairable)
            self.summary_label.setText(
                f"Found {len(findings)} problem(s); {repairable} can be repaired safely."
            )
        else:
            self.summary_label.setText("No problems found: the registry and the disk agree.")
        self.repair_button.setEnabled(any(f.repairable for f in findings))
        self.checked.emit()

    def _show_repaired(self, result: tuple[list[str], list[Finding]]) -> None:
        done, findings = result
        self.done_label.setText(
            "Repaired:\n" + "\n".join(done) if done else "There was nothing to repair."
        )
        self.done_label.show()
        self._show_findings(findings)
        self.repaired.emit()

    def _show_failure(self, message: str, _details: str) -> None:
        self.summary_label.setText(message)
        self.repair_button.setEnabled(bool(self.findings))
