"""HTTP routers, one per area: pages (``home``, ``auth``, ``annotate``, ``expert``, ``curator``, ``media``)
and the JSON API (``api_auth``, ``api_work``, ``api_expert``, ``api_curator``)."""
