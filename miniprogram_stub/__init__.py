"""Fake WeChat platform (api.weixin.qq.com) for local runs and tests."""
