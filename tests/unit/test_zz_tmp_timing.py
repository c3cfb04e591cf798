import time
from support import train_version
def test_t(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_MLOPS_STATE_DB", f"sqlite:///{tmp_path/'s.db'}")
    c = workspace.write_config("fraud", {"serving": {"prediction_log": str(tmp_path/'log')}})
    t=time.time(); v1=train_version(c,"manual__a"); print("v1", v1, time.time()-t)
    t=time.time(); v2=train_version(c,"manual__b"); print("v2", v2, time.time()-t)
