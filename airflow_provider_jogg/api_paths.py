"""The JoggAI API's paths, below the base URL (which may carry a prefix such as ``/open``).

Plain constants with no import, so that the fake Jogg server (:mod:`airflow_provider_jogg.testing`),
which runs without Airflow, serves the very paths the provider calls. The client side takes them
from :mod:`airflow_provider_jogg.protocol`.
"""

CREATE_PATH = "/v2/create_lip_sync_video"
STATUS_PATH = "/v2/lip_sync_video/{task_id}"
WHOAMI_PATH = "/v2/user/whoami"
QUOTA_PATH = "/v2/user/remaining_quota"
UPLOAD_PATH = "/v2/upload/asset"
