# The MLflow server with the Postgres driver and the S3 client its compose service uses.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.8
EXPOSE 5000
