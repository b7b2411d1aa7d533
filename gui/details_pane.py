"""Everything about the selected extension, and the actions on it.

The pane only shows a record and says which button was pressed; the window runs the action
(on a worker where it writes), so the pane never touches the registry.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.labels import ElidedValue, value_form, value_label
from gui.version_details import VersionFacts, VersionsSection
from registry.compatibility import misfit
from registry.permissions import PERMISSIONS
from registry.store import ExtensionRecord
from registry.version import APP_VERSION

NO_SELECTION_TEXT = "Select an extension to see its details."
# A README or licence larger than this is not shown (it is still in the extension's folder).
README_MAX_BYTES = 256 * 1024
LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING")


class ReadmeView(QTextBrowser):
    """An extension's own README.md, rendered as Markdown, and its licence text. Nothing the
    README refers to is loaded: no remote images or pages, and no local files (a README could
    point anywhere on the disk); links open in the person's browser only when clicked."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("readme")
        self.setAccessibleName("The extension's README")
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._open_link)
        self.setFrameShape(QTextBrowser.Shape.NoFrame)
        self.setMinimumHeight(120)

    def loadResource(self, kind: int, name: QUrl | str) -> object:
        return None

    def _open_link(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)

    def show_readme(self, folder: Path) -> None:
        """The README, then the licence text, from the extension's own folder."""
        parts = []
        readme = _read_text(folder / "README.md")
        if readme is not None:
            parts.append(readme)
        for name in LICENCE_FILES:
            licence = _read_text(folder / name)
            if licence is not None:
                # A licence is plain text whatever its file's name: its paragraphs wrap, and
                # nothing in it is taken for Markdown.
                plain = re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", licence.rstrip())
                parts.append(f"## Licence\n\n{plain}")
                break
        if not parts:
            self.hide()
            return
        self.setMarkdown("\n\n".join(parts))
        self.show()


def _read_text(path: Path) -> str | None:
    """A small text file's content; None when it is missing, unreadable or too large."""
    try:
        with path.open("rb") as handle:
            data = handle.read(README_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > README_MAX_BYTES:
        return f"(Too large to show here; it is {path}.)"
    return data.decode("utf-8", errors="replace")


def state_words(record: ExtensionRecord) -> list[str]:
    """ "Enabled", and what it needs when it does not fit this app."""
    needs = misfit(record, APP_VERSION)
    if needs is None:
        return ["Enabled" if record.enabled else "Disabled"]
    if record.enabled:
        return ["Enabled", f"turned on although it needs {needs}"]
    return ["Disabled", f"needs {needs}"]


class DetailsPane(QWidget):
    enable_requested = Signal(str, bool)
    uninstall_requested = Signal(str)
    configure_requested = Signal(str)
    open_folder_requested = Signal(str)
    update_requested = Signal(str)
    rollback_requested = Signal(str)
    hold_requested = Signal(str, bool)  # True: hold, False: release

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("detailsPane")
        self.record: ExtensionRecord | None = None

        self.icon_label = QLabel()
        self.icon_label.setFixedSize(48, 48)
        self.name_label = QLabel()
        self.name_label.setObjectName("detailsName")
        self.name_label.setTextFormat(Qt.TextFormat.PlainText)
        self.name_label.setWordWrap(True)
        name_font = self.name_label.font()
        name_font.setPointSizeF(name_font.pointSizeF() * 1.35)
        name_font.setBold(True)
        self.name_label.setFont(name_font)
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setWordWrap(True)

        heading_text = QVBoxLayout()
        heading_text.addWidget(self.name_label)
        heading_text.addWidget(self.state_label)
        heading = QHBoxLayout()
        heading.addWidget(self.icon_label, 0, Qt.AlignmentFlag.AlignTop)
        heading.addLayout(heading_text, 1)

        self.description_label = value_label("Description")
        self.version_label = value_label("Version")
        self.author_label = value_label("Author")
        self.license_label = value_label("Licence")
        self.homepage_label = QLabel()
        self.homepage_label.setObjectName("Homepage")
        self.homepage_label.setAccessibleName("Homepage")
        self.homepage_label.setTextFormat(Qt.TextFormat.RichText)
        self.homepage_label.setOpenExternalLinks(True)
        self.homepage_label.setWordWrap(True)
        self.capabilities_label = value_label("Capabilities")
        self.permissions_label = value_label("Permissions")
        self.path_label = ElidedValue("Install folder", Qt.TextElideMode.ElideMiddle)
        self.sha_label = ElidedValue("Archive SHA-256", Qt.TextElideMode.ElideRight)
        self.installed_label = value_label("Installed")

        form = value_form()
        form.addRow("Version:", self.version_label)
        form.addRow("Author:", self.author_label)
        form.addRow("Licence:", self.license_label)
        form.addRow("Homepage:", self.homepage_label)
        form.addRow("Capabilities:", self.capabilities_label)
        form.addRow("Permissions:", self.permissions_label)
        form.addRow("Installed:", self.installed_label)
        form.addRow("Folder:", self.path_label)
        form.addRow("SHA-256:", self.sha_label)

        self.enable_button = QPushButton("Disable")
        self.enable_button.setAccessibleName("Enable or disable the extension")
        self.enable_button.clicked.connect(self._toggle_enabled)
        self.configure_button = QPushButton("Configure…")
        self.configure_button.setAccessibleName("Configure the extension's settings")
        self.configure_button.clicked.connect(self._configure)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setAccessibleName("Open the extension's folder")
        self.open_folder_button.clicked.connect(self._open_folder)
        self.uninstall_button = QPushButton("Uninstall…")
        self.uninstall_button.setAccessibleName("Uninstall the extension")
        self.uninstall_button.clicked.connect(self._uninstall)

        buttons = QHBoxLayout()
        buttons.addWidget(self.enable_button)
        buttons.addWidget(self.configure_button)
        buttons.addWidget(self.open_folder_button)
        buttons.addStretch(1)
        buttons.addWidget(self.uninstall_button)

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.addLayout(heading)
        content_layout.addWidget(self.description_label)
        content_layout.addLayout(form)
        self.versions = VersionsSection()
        self.versions.update_clicked.connect(self._update)
        self.versions.rollback_clicked.connect(self._roll_back)
        self.versions.hold_clicked.connect(self._hold)
        content_layout.addWidget(self.versions)
        self.readme_view = ReadmeView()
        content_layout.addWidget(self.readme_view, 1)
        # Without a README, the room left over stays below everything, not between the rows.
        content_layout.addStretch(0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(scroll, 1)
        details_layout.addLayout(buttons)

        self.placeholder = QLabel(NO_SELECTION_TEXT)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet(
            colors.style(colors.hint_color(self.palette())) + " padding: 24px;"
        )

        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(details)
        self._details = details
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.stack)
        self.show_record(None)

    def show_record(
        self,
        record: ExtensionRecord | None,
        icon: QIcon | None = None,
        facts: VersionFacts | None = None,
    ) -> None:
        """``facts``: its versions, which the window reads (without them that part is hidden)."""
        self.record = record
        if record is None:
            self.stack.setCurrentWidget(self.placeholder)
            return
        self.stack.setCurrentWidget(self._details)
        self.icon_label.setPixmap(icon.pixmap(48, 48) if icon is not None else QIcon().pixmap(48))
        self.name_label.setText(record.name)
        self.state_label.setText(" · ".join([record.id, *state_words(record)]))
        self.description_label.setText(record.description or "No description.")
        self.version_label.setText(record.version)
        self.author_label.setText(record.author or "Not given")
        self.license_label.setText(record.license or "Not given")
        if record.homepage:
            # html (and its table of entities) is not needed before the first paint.
            from html import escape

            url = escape(record.homepage, quote=True)
            self.homepage_label.setText(f'<a href="{url}">{escape(record.homepage)}</a>')
        else:
            self.homepage_label.setText("Not given")
        self.capabilities_label.setText(", ".join(record.capabilities) or "None")
        if record.permissions:
            self.permissions_label.setText(
                "\n".join(
                    f"• {PERMISSIONS.get(name, f'Unknown permission {name!r}')}"
                    for name in record.permissions
                )
            )
        else:
            self.permissions_label.setText("Asks for no permissions.")
        self.installed_label.setText(
            f"{record.installed_at[:16].replace('T', ' ')} (updated "
            f"{record.updated_at[:16].replace('T', ' ')})"
        )
        self.path_label.set_value(record.install_path)
        self.sha_label.set_value(record.archive_sha256)
        self.readme_view.show_readme(Path(record.install_path))
        if facts is not None:
            self.versions.show_facts(record, facts)
        self.versions.setVisible(facts is not None)
        self.enable_button.setText("Disable" if record.enabled else "Enable")
        self.enable_button.setEnabled(True)
        self.configure_button.setEnabled(bool(record.config_defaults))
        self.configure_button.setToolTip(
            "" if record.config_defaults else "This extension has no settings."
        )

    def set_busy(self, busy: bool) -> None:
        """While a write for this extension runs, its buttons wait."""
        self.enable_button.setEnabled(not busy)
        self.versions.set_busy(busy)

    def _update(self) -> None:
        if self.record is not None:
            self.update_requested.emit(self.record.id)

    def _roll_back(self) -> None:
        if self.record is not None:
            self.rollback_requested.emit(self.record.id)

    def _hold(self, held: bool) -> None:
        if self.record is not None:
            self.hold_requested.emit(self.record.id, held)

    def _toggle_enabled(self) -> None:
        if self.record is not None:
            self.enable_requested.emit(self.record.id, not self.record.enabled)

    def _configure(self) -> None:
        if self.record is not None:
            self.configure_requested.emit(self.record.id)

    def _open_folder(self) -> None:
        if self.record is not None:
            self.open_folder_requested.emit(self.record.install_path)

    def _uninstall(self) -> None:
        if self.record is not None:
            self.uninstall_requested.emit(self.record.id)
