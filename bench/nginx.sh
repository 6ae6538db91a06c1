# Sourced by the bench scripts: nginx serving a 1 KiB file (small.bin) on
# 127.0.0.1:PORT from DIR/www, its temporary files in DIR/tmp, in the
# background (the caller's EXIT trap stops its jobs).
#   start_nginx DIR PORT
start_nginx() {
  local dir=$1 port=$2
  mkdir -p "$dir/www" "$dir/tmp"; chmod 755 "$dir" "$dir/tmp"
  head -c 1024 /dev/urandom > "$dir/www/small.bin"
  cat > "$dir/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
       fastcgi_temp_path $dir/tmp; uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
       server { listen 127.0.0.1:$port; root $dir/www; } }
NGX
  nginx -c "$dir/nginx.conf" &
}
