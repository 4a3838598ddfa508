"""Small file operations through Hadoop's FileSystem API, so outputs may live on
local disk, HDFS or S3 alike (the same calls the Spark writers use)."""

from __future__ import annotations

from pyspark.sql import SparkSession


class HadoopFS:
    def __init__(self, spark: SparkSession):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _p(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str):
        return self._p(path).getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._p(path)))

    def delete(self, path: str) -> None:
        if self.exists(path):
            self._fs(path).delete(self._p(path), True)

    def rename(self, src: str, dst: str) -> None:
        fs = self._fs(src)
        parent = self._p(dst).getParent()
        if parent is not None:
            fs.mkdirs(parent)
        if not fs.rename(self._p(src), self._p(dst)):
            raise OSError(f"could not rename {src} -> {dst}")

    def write_text(self, path: str, text: str) -> None:
        """Write atomically: to a temporary name, then rename over the target."""
        tmp = path + ".tmp"
        out = self._fs(tmp).create(self._p(tmp), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        self.delete(path)
        self.rename(tmp, path)

    def read_text(self, path: str) -> str:
        fs = self._fs(path)
        stream = fs.open(self._p(path))
        try:
            size = fs.getFileStatus(self._p(path)).getLen()
            buf = self._jvm.java.io.ByteArrayOutputStream()
            self._jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buf, 65536, False)
            data = bytes(buf.toByteArray())
            assert len(data) == size
            return data.decode("utf-8")
        finally:
            stream.close()

    def list_files(self, path: str) -> list[str]:
        it = self._fs(path).listFiles(self._p(path), True)
        out = []
        while it.hasNext():
            out.append(it.next().getPath().toString())
        return sorted(out)

    def file_signature(self, path: str) -> tuple[str, int, int]:
        st = self._fs(path).getFileStatus(self._p(path))
        return (path, int(st.getLen()), int(st.getModificationTime()))
