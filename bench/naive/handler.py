"""The naive reference behind Mangum, as it would be deployed."""

from mangum import Mangum

from bench.naive.app import app

handler = Mangum(app, lifespan="off")
