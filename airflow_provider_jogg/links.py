"""The "Jogg result" extra link: opens the lip-synced video of a finished task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

#: XCom key the link reads; pushed when a wait succeeds
RESULT_URL_XCOM_KEY = "jogg_result_url"


class JoggResultLink(BaseOperatorLink):
    """Links a finished lip-sync wait to its result video (read from XCom, as Airflow 3 requires)."""

    name = "Jogg result"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        try:
            from airflow.sdk.execution_time.xcom import XCom
        except ImportError:  # pragma: no cover - Airflow 3.0
            from airflow.models.xcom import XCom  # type: ignore[no-redef]

        url = XCom.get_value(ti_key=ti_key, key=RESULT_URL_XCOM_KEY)
        return url if isinstance(url, str) else ""
